"""The chunked GLA kernels' plan: sizes and target -> every constant of the rendered kernels. Pure: no tensors,
no Triton.

This is the one place that says which sizes the kernels take (`fits`) and which tiles, warps and stages they
run with. A layer receives its `GLAPlan`; the launcher adds only what a call brings (its inputs' dtype, an
initial state, a final state's gradient).
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass

from composer.kernels.plan import SMALLEST_16BIT_SIZE, KernelCall

FORWARD_TEMPLATE = "gla_forward.py.jinja"
BACKWARD_TEMPLATE = "gla_backward.py.jinja"
STEP_TEMPLATE = "gla_step.py.jinja"
TILE_SIZES = (16, 32, 64, 128, 256)  # key and value head dims: register tiles, powers of two from tl.dot's 16
CHUNKS = (16, 32, 64, 128)  # the (Q, Q) scores of a chunk stay one register tile
SUB = 16  # the sub-chunk: scores between sub-chunks are products around a reference point inside the chunk
DIAGONAL_KEYS = 16  # key channels a diagonal block's exact (SUB, SUB, keys) product takes at a time
# Per inputs' dtype, (tl.dot's operands, the precision of fp32 ones): fp32 inputs multiply in tf32x3 (three
# tf32 products, fp32's accuracy; the SSD kernels' fp32 default, where ieee runs without the tensor cores);
# 16-bit inputs multiply 16-bit operands with fp32 accumulation, as fla does. A plan lists the targets'
# precisions (fp32, bf16); fp16 inputs render on demand.
DOT_OPERANDS = {"fp32": ("fp32", "tf32x3"), "bf16": ("bf16", "none"), "fp16": ("fp16", "none")}
TARGET_PRECISIONS = ("fp32", "bf16")


def misfit(key_dim: int, value_dim: int, chunk: int) -> str | None:
    """The field whose size the kernels cannot take (key_dim, head_dim, chunk: the first), or None."""
    for name, size, sizes in (("key_dim", key_dim, TILE_SIZES), ("head_dim", value_dim, TILE_SIZES),
                              ("chunk", chunk, CHUNKS)):
        if size not in sizes:
            return name
    return None


# On the H200 (triton 3.6.0) key_dim 16 stopped with an illegal memory access in fp32 at either stage count, while
# 32 and up pass (results/gla_h200_2026-12-02_3ca6105_variants.log); the interpreter runs 16, which the tests use.
GPU_SMALLEST_KEY_DIM = 32


def fits(key_dim: int, value_dim: int, chunk: int, gpu: bool = False) -> str | None:
    """None when the kernels take these sizes (on a GPU, with `gpu`), else why not (for `mixc check`, listings
    and errors)."""
    name = misfit(key_dim, value_dim, chunk)
    if name is None:
        if gpu and key_dim < GPU_SMALLEST_KEY_DIM:
            return (f"key_dim {key_dim} is below {GPU_SMALLEST_KEY_DIM}, the smallest key tile the generated GLA "
                    f"kernels run on a GPU")
        return None
    size, sizes = dict(key_dim=(key_dim, TILE_SIZES), head_dim=(value_dim, TILE_SIZES),
                       chunk=(chunk, CHUNKS))[name]
    return f"{name} {size} is not one of the generated GLA kernels' tiles {', '.join(map(str, sizes))}"


@dataclass(frozen=True)
class GLASizes:
    """What the kernels are specialised on but the tiles: K (key dim), V (value dim), Q (chunk), heads H."""

    key_dim: int
    value_dim: int
    chunk: int
    heads: int


@dataclass(frozen=True)
class GLAPlan:
    """The constants every call shares (sizes, tiles, warps, stages); a call adds its inputs' precision and its
    state flags (`forward_constants`, `backward_constants`)."""

    sizes: GLASizes
    shared: tuple  # sorted (name, value) pairs
    forward_warps: int = 8
    backward_warps: int = 8
    stages: int = 2
    # The backward's loops over value blocks, software-pipelined in 16-bit, gave dq, dk and dlog_a 70-100% off on
    # the H200 whenever V > BV (results/gla_h200_2026-12-02_3ca6105_variants.log); unpipelined they pass.
    backward_stages: int = 1
    # `mixc tune` tunes the SSD scans of a generated entry: a GLA layer runs none.
    scans: tuple = ()
    # The plan as the string a custom-op call carries (kernels/gla/ops.py; `plan_of_key` reads it back), made here
    # once so that a frame torch.compile traces reads it as a constant.
    key: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", repr((dataclasses.astuple(self.sizes), self.shared, self.forward_warps,
                                              self.backward_warps, self.stages, self.backward_stages)))

    def operands(self, precision: str) -> dict:
        """OPERAND and DOT_PRECISION for inputs of `precision`: fp32 products for 16-bit inputs at small sizes."""
        sizes = self.sizes
        if precision != "fp32" and min(sizes.key_dim, sizes.value_dim, sizes.chunk) < SMALLEST_16BIT_SIZE:
            precision = "fp32"
        operand, dot_precision = DOT_OPERANDS[precision]
        return {"OPERAND": operand, "DOT_PRECISION": dot_precision}

    def forward_constants(self, precision: str, initial_state: bool) -> dict:
        return dict(sorted({**dict(self.shared), **self.operands(precision), "HAS_INITIAL_STATE": initial_state,
                            "DK": DIAGONAL_KEYS, "NUM_WARPS": self.forward_warps, "NUM_STAGES": self.stages}.items()))

    def backward_constants(self, precision: str, initial_state: bool, final_state_grad: bool) -> dict:
        return dict(sorted({**dict(self.shared), **self.operands(precision), "HAS_INITIAL_STATE": initial_state,
                            "HAS_FINAL_STATE_GRAD": final_state_grad, "NUM_WARPS": self.backward_warps,
                            "NUM_STAGES": self.backward_stages}.items()))

    def step_constants(self) -> dict:
        """The decoding step's: one (K, BV) tile of a head's fp32 state a program (any inputs' dtype: it reads
        them into fp32). 32 columns keep K = 256's tile at 64 registers a thread over 4 warps."""
        sizes = self.sizes
        return dict(K=sizes.key_dim, V=sizes.value_dim, BV=min(sizes.value_dim, 32), NUM_WARPS=4)

    def calls(self, precision: str, mode: str) -> list[KernelCall]:
        """What a run at `precision` in `mode` renders: training runs the forward and backward from no state
        (the layer returns no state, so no state gradient comes back); inference runs from no state (a forward)
        or the cache's (prefill), and the decoding step."""
        if mode == "train":
            return [KernelCall(FORWARD_TEMPLATE, tuple(self.forward_constants(precision, False).items())),
                    KernelCall(BACKWARD_TEMPLATE, tuple(self.backward_constants(precision, False, False).items()))]
        step = KernelCall(STEP_TEMPLATE, tuple(sorted(self.step_constants().items())))
        return [KernelCall(FORWARD_TEMPLATE, tuple(self.forward_constants(precision, initial).items()))
                for initial in (False, True)] + [step]

    def loadable(self) -> list[KernelCall]:
        """Every specialisation a built layer may load, for an export to render."""
        calls = [KernelCall(FORWARD_TEMPLATE, tuple(self.forward_constants(precision, initial).items()))
                 for precision in TARGET_PRECISIONS for initial in (False, True)]
        calls += [KernelCall(BACKWARD_TEMPLATE, tuple(self.backward_constants(precision, initial, final).items()))
                  for precision in TARGET_PRECISIONS for initial in (False, True) for final in (False, True)]
        return calls + [KernelCall(STEP_TEMPLATE, tuple(sorted(self.step_constants().items())))]


def plan_of_key(key: str) -> GLAPlan:
    """The plan `GLAPlan.key` spelled."""
    sizes, shared, forward_warps, backward_warps, stages, backward_stages = ast.literal_eval(key)
    return GLAPlan(GLASizes(*sizes), shared, forward_warps, backward_warps, stages, backward_stages=backward_stages)


def plan_gla(sizes: GLASizes) -> GLAPlan:
    """Constants for `sizes` (which must fit).

    BK, BV   the key and value columns of the state tile a state walk holds (and an output or gradient program
             reads): 64 each keeps a (64, 64) fp32 tile and the chunk's (Q, 64) operands in registers, and splits
             GLA 340M's K = 128, V = 256 heads into 8 walks a head, programs for the multiprocessors where heads
             and batch are few
    SUB      the sub-chunk (16: tl.dot's smallest tile); the forward's DK: the key channels of a diagonal block's
             exact (SUB, SUB, DK) product at a time (the backward's diagonal takes one step at a time)
    warps    8 in both directions: at GLA 340M's heads and chunk 64, ptxas (sm_90a, benchmarks/gla.py --resources)
             spills nothing in bf16 at 8 (at 4 fp32's output kernel spilled 624 B); fla#984 saw a WY-style
             backward miscompile at chunk 64 with 4 warps on Hopper (this one is not WY; the GPU check decides)
    """
    if fits(sizes.key_dim, sizes.value_dim, sizes.chunk) is not None:
        raise ValueError(fits(sizes.key_dim, sizes.value_dim, sizes.chunk))
    shared = dict(K=sizes.key_dim, V=sizes.value_dim, Q=sizes.chunk, SUB=SUB,
                  BK=min(sizes.key_dim, 64), BV=min(sizes.value_dim, 64))
    return GLAPlan(sizes, tuple(sorted(shared.items())), forward_warps=8, backward_warps=8, stages=2)
