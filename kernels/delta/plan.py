"""The chunked delta rule's kernel plan: sizes and target -> every constant of the rendered kernels.
Pure: no tensors, no Triton."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from composer.kernels.plan import KernelCall

FORWARD_TEMPLATE = "delta_forward.py.jinja"
BACKWARD_TEMPLATE = "delta_backward.py.jinja"
STEP_TEMPLATE = "delta_step.py.jinja"
SUB = 16  # T's inverse runs by blocks of SUB rows: tl.dot's smallest tile
TILE_SIZES = (16, 32, 64, 128, 256)
CHUNKS = (16, 32, 64, 128)
# Per inputs' dtype, (tl.dot's operands, the precision of fp32 ones): fp32 inputs multiply in fp32 (ieee);
# 16-bit inputs multiply 16-bit operands (fp32 accumulation), as fla does. A plan lists the targets'
# precisions (fp32, bf16); fp16 inputs render on demand.
DOT_OPERANDS = {"fp32": ("fp32", "ieee"), "bf16": ("bf16", "none"), "fp16": ("fp16", "none")}
TARGET_PRECISIONS = ("fp32", "bf16")


def _operands(precision: str) -> dict:
    operand, dot_precision = DOT_OPERANDS[precision]
    return {"OPERAND": operand, "DOT_PRECISION": dot_precision}


def fits(key_dim: int, value_dim: int, chunk: int) -> str | None:
    """Why the kernels cannot take these sizes, or None: head dims are register tiles (powers of two from 16)."""
    for name, size, sizes in (("key_dim", key_dim, TILE_SIZES), ("head_dim", value_dim, TILE_SIZES),
                              ("chunk", chunk, CHUNKS)):
        if size not in sizes:
            return f"{name} {size} is not one of the kernels' tiles {', '.join(map(str, sizes))}"
    return None


@dataclass(frozen=True)
class DeltaSizes:
    key_dim: int
    value_dim: int
    chunk: int
    heads: int
    key_heads: int
    gate: bool


@dataclass(frozen=True)
class DeltaPlan:
    """The constants shared by every call (sizes, tiles), and the launch parameters; a call adds whether it
    starts from a state and the precision of its inputs (`forward_constants`)."""

    shared: tuple          # sorted (name, value) pairs
    prepare_warps: int
    state_warps: int
    backward_warps: int
    state_stages: int      # software-pipelining stages of the two walks over the chunks
    output_block: int      # BV_OUT: the value columns a delta_output_fwd program makes
    output_warps: int
    forward_stages: int    # delta_state_fwd's stages: the forward walk alone, lighter than the backward's

    def fields(self) -> tuple:
        """Every field in order: what DeltaPlan(*fields) makes again (the custom ops' plan key)."""
        return tuple(getattr(self, field.name) for field in dataclasses.fields(self))

    def forward_constants(self, precision: str, initial_state: bool) -> dict:
        """The forward's: the same with and without a backward to save for (only the buffers' dtypes differ)."""
        return dict(sorted({**dict(self.shared), **_operands(precision), "HAS_INITIAL_STATE": initial_state,
                            "BV_OUT": self.output_block}.items()))

    def backward_constants(self, precision: str, initial_state: bool) -> dict:
        return dict(sorted({**dict(self.shared), **_operands(precision), "HAS_INITIAL_STATE": initial_state}.items()))

    def step_constants(self) -> dict:
        """The decoding step's: it multiplies nothing on the tensor cores, so no operand type."""
        shared = dict(self.shared)
        return {name: shared[name] for name in ("BV", "GATE", "HEAD_RATIO", "K", "V")}

    def calls(self, precision: str, mode: str) -> list[KernelCall]:
        """What a run at `precision` in `mode` renders: training saves and runs the backward (from no state
        or a given one), inference runs from no state (a forward) or the cache's (prefill), and decodes."""
        saves = mode == "train"
        calls = [KernelCall(FORWARD_TEMPLATE, tuple(self.forward_constants(precision, initial).items()))
                 for initial in (False, True)]
        if saves:
            calls += [KernelCall(BACKWARD_TEMPLATE, tuple(self.backward_constants(precision, initial).items()))
                      for initial in (False, True)]
        else:
            calls.append(KernelCall(STEP_TEMPLATE, tuple(self.step_constants().items())))
        return calls

    def loadable(self) -> list[KernelCall]:
        """Every specialisation a built layer may load, once each (training and inference share the forward's),
        for an export to render."""
        return list(dict.fromkeys(call for precision in TARGET_PRECISIONS for mode in ("train", "inference")
                                  for call in self.calls(precision, mode)))


def plan_delta(sizes: DeltaSizes, gpu: bool = False) -> DeltaPlan:
    """Constants for `sizes` (which must fit), for a GPU with `gpu`.
    GATE the kernels take a gate: on a GPU also where the layer has none (DeltaNet), which then passes zero log
         gates: the plain state backward stopped with an illegal memory access on the H200 in bf16 at K = 128
         where the gated one, the same walk scaled by the gates, passes (results/delta_h200_2026-12-02_3ca6105_
         variants.log)
    KB   the state walks hold the (K, BV) state as K // KB blocks of KB = 64 key rows (fla's layout): on the H200 a
         whole 128-row tile in 16-bit products stopped with illegal memory accesses or NaN at every BV and stage
         count tried, where 64 rows pass (results/delta_h200_2026-12-02_3ca6105_variants.log)
    BV   the value columns a state program holds: 32 (V // 32 programs a head), as 16-wide 16-bit tiles went wrong
         on the H200 (kernels/plan.py's SMALLEST_16BIT_SIZE)."""
    shared = dict(K=sizes.key_dim, V=sizes.value_dim, Q=sizes.chunk, SUB=SUB, BV=min(sizes.value_dim, 32),
                  KB=min(sizes.key_dim, 64), HEAD_RATIO=sizes.heads // sizes.key_heads, GATE=sizes.gate or gpu)
    # 8 warps everywhere: fla#984 saw WY-style backward kernels miscompile at chunk 64 with 4 warps on Hopper, and
    # the fused forward walk spilled at 4. The split forward spills at neither (ptxas, sm_90a, bf16, K = V = 128:
    # solve 107 registers at 8 warps; wu 90 / 134, walk 139 / 166, outputs 189 / 224 at 8 / 4 warps; 2 warps
    # spill); which count is faster is for `benchmarks/delta.py --sweep` on the GPU to say.
    # The walks stage their loads where the stages fit an H200's 227 KB of shared memory a program: 3 stages of
    # 128-wide keys in fp32 products asked 254 KB there, one 256-wide stage in 16-bit 74 KB.
    stages = 3 if sizes.key_dim <= 64 else 1
    # The outputs run every chunk at once (delta_output_fwd): 64 value columns a program, the width of a state
    # block's rows, so that its (Q, 64) accumulator and (64, 64) state block are the walk's tiles.
    return DeltaPlan(tuple(sorted(shared.items())), prepare_warps=8, state_warps=8, backward_warps=8,
                     state_stages=stages, output_block=min(sizes.value_dim, 64), output_warps=8,
                     forward_stages=stages)
