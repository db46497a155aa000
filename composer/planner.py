"""Spec -> graph of ops with shapes, parameters, FLOPs, activation bytes and inference state.

Each node is one op of one layer (`L3.mixer.in_proj`), with:
  op            what it computes (linear, conv1d, ssd_scan, attention, ...)
  layer, block  where it sits (None for embedding / final norm / head)
  shape_in/out  per-token widths (the batch and length axes are implied)
  params        learned parameters (must equal the built module's: tests check it)
  flops         forward FLOPs per token at context max_len (training: 3x, see Plan)
  decode_flops  FLOPs per generated token at context max_len, with a cache
  act_bytes     bytes per token of the op's output (saved for backward)
  state_bytes   fixed recurrent state per sequence (SSM, linear attention, conv)
  kv_bytes      KV cache bytes per token of context (attention)
Edges follow the data. Costs are closed-form, written from the papers, not measured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from collections import Counter

import networkx as nx

from composer.costs import Op, norm
from composer.kernels.plan import DEFAULT_GPU, LayerKernels, Target
from composer.kinds import kind_of
from composer.layers.cache import entry_bytes
from composer.problems import Problem
from composer.resolve import DTYPE_BYTES, model_sizes, resolve
from composer.schedule import layer_names
from composer.spec import Block, Spec


def block_ops(spec: Spec, block: Block, part: str) -> list[Op]:
    """A resolved block's mixer or channel ops, from its kind."""
    value = getattr(block, part)
    return kind_of(value, "sequence" if part == "mixer" else "channel").costs(value, model_sizes(spec, block))


def planned_params(spec: Spec) -> int:
    """Parameters of a resolved spec, per distinct block rather than per layer: the count a build is
    checked against before it allocates anything."""
    d, counts = spec.d_model, Counter(layer_names(spec))
    total = spec.padded_vocab * d * (1 if spec.tie_embeddings else 2) + norm("final_norm", spec.norm.kind, d).params
    for name, count in counts.items():
        block = spec.blocks[name]
        ops = block_ops(spec, block, "mixer") + block_ops(spec, block, "channel")
        norms = 2 if block_ops(spec, block, "channel") else 1
        total += count * (sum(op.params for op in ops) + norms * norm("norm", block.norm.kind, d).params)
    return total


def planned_build_bytes(spec: Spec, parameter_bytes: int) -> int:
    """Memory a build allocates: parameters at `parameter_bytes` each, plus each layer's own tables."""
    total = planned_params(spec) * parameter_bytes
    for name, count in Counter(layer_names(spec)).items():
        block = spec.blocks[name]
        for part, role in (("mixer", "sequence"), ("channel", "channel")):
            value = getattr(block, part)
            total += count * kind_of(value, role).build_bytes(value, model_sizes(spec, block))
    return total


@dataclass(frozen=True)
class LayerSummary:
    index: int
    block: str
    mixer: str
    channel: str
    params: int
    flops: float          # forward, per token
    decode_flops: float   # per generated token
    state_bytes: int      # fixed, per sequence
    kv_bytes: int         # per token of context
    kernels: LayerKernels  # what runs for its sequence mixer on the plan's target


@dataclass
class Plan:
    spec: Spec            # resolved
    graph: nx.DiGraph
    layers: list[LayerSummary]
    target: Target        # what the kernels were decided for

    def total(self, field: str) -> float:
        return sum(data.get(field, 0) for _, data in self.graph.nodes(data=True))

    @property
    def params(self) -> int:
        return int(self.total("params"))

    @property
    def train_flops_per_token(self) -> float:
        return 3.0 * self.total("flops")  # forward + backward (twice the forward)

    def cache_layouts(self, length: int | None = None) -> list:
        """Each layer's decoding cache for sequences of up to `length` tokens (default max_len): CacheEntry
        tuples, or a string where the layer cannot decode."""
        length = self.spec.max_len if length is None else length
        return [kind_of(self.spec.blocks[name].mixer, "sequence").cache(
                    self.spec.blocks[name].mixer, model_sizes(self.spec, self.spec.blocks[name]), length)
                for name in layer_names(self.spec)]

    def decode_problem(self) -> str | None:
        """Why the model cannot decode token by token (its first bidirectional layer), or None."""
        for index, (name, layout) in enumerate(zip(layer_names(self.spec), self.cache_layouts(1))):
            if isinstance(layout, str):
                return f"layer {index} (block `{name}`): {layout}"
        return None

    def cache_bytes(self, batch: int = 1, length: int | None = None, state_bytes: int = 4) -> int:
        """Bytes of the decoding cache `build`'s model allocates (`allocate_cache(batch, length)`, keys, values
        and conv inputs in the spec's dtype, recurrent states fp32 unless state_bytes says otherwise)."""
        if self.decode_problem() is not None:
            raise ValueError(f"no decoding cache: {self.decode_problem()}")
        nbytes = DTYPE_BYTES[self.spec.dtype]
        return sum(entry_bytes(entries, batch, nbytes, state_bytes) for entries in self.cache_layouts(length))

    def inference_state_bytes(self, context: int | None = None) -> int:
        """Cache for one sequence at `context` tokens: fixed state plus KV cache."""
        context = self.spec.max_len if context is None else context
        return int(self.total("state_bytes") + self.total("kv_bytes") * context)


class _GraphBuilder:
    def __init__(self, nbytes: int):
        self.graph, self.nbytes, self.last = nx.DiGraph(), nbytes, None
        self.added: list[str] = []  # in order: a layer's nodes are a slice of it, so planning stays linear

    def add(self, node: str, op: Op, layer: int | None, block: str | None, after: str | None = "last") -> str:
        self.graph.add_node(node, op=op.op, layer=layer, block=block, shape_in=op.shape_in, shape_out=op.shape_out,
                            params=op.params, flops=op.flops, decode_flops=op.decode_flops,
                            act_bytes=op.shape_out[0] * self.nbytes, state_bytes=op.state_bytes,
                            kv_bytes=op.kv_bytes)
        self.added.append(node)
        source = self.last if after == "last" else after
        if source is not None:
            self.graph.add_edge(source, node)
        self.last = node
        return node

    def chain(self, prefix: str, ops: list[Op], layer: int, block: str) -> None:
        for op in ops:
            self.add(f"{prefix}.{op.name}", op, layer, block)


def default_target(precision: str = "fp32", mode: str = "train") -> Target:
    """This process's GPU; without one, the GPU a plan assumes (DEFAULT_GPU), so a listing made on a laptop
    says what will run on a GPU."""
    current = Target.current(precision, mode)
    if current.on_gpu:
        return current
    return dataclasses.replace(DEFAULT_GPU, precision=precision, mode=mode)


def block_kernels(spec: Spec, target: Target) -> dict[str, LayerKernels]:
    """What runs for each scheduled block's sequence mixer on `target` (blocks that share a mixer share it);
    `spec` must be resolved."""
    return {name: kind_of(spec.blocks[name].mixer, "sequence").kernels(spec.blocks[name].mixer, target)
            for name in dict.fromkeys(layer_names(spec))}


def plan(spec: Spec, target: Target | None = None) -> Plan:
    """The op graph of `spec` (resolved first), with per-layer summaries and the kernels each layer runs on
    `target` (default: `default_target()`)."""
    spec = resolve(spec)
    target = target or default_target()
    kernels = block_kernels(spec, target)
    d, nbytes = spec.d_model, DTYPE_BYTES[spec.dtype]
    builder = _GraphBuilder(nbytes)
    vocab = spec.padded_vocab
    builder.add("embedding", Op("embedding", "embedding", (1,), (d,), vocab * d), None, None)
    summaries = []
    for index, name in enumerate(layer_names(spec)):
        block, prefix = spec.blocks[name], f"L{index}"
        residual = builder.last
        before = len(builder.added)
        builder.add(f"{prefix}.mixer_norm", norm("mixer_norm", block.norm.kind, d), index, name)
        builder.chain(f"{prefix}.mixer", block_ops(spec, block, "mixer"), index, name)
        builder.add(f"{prefix}.mixer_residual", Op("residual", "add", (d,), (d,), 0, d, d), index, name)
        builder.graph.add_edge(residual, f"{prefix}.mixer_residual")
        channel = block_ops(spec, block, "channel")
        if channel:
            residual = builder.last
            builder.add(f"{prefix}.channel_norm", norm("channel_norm", block.norm.kind, d), index, name)
            builder.chain(f"{prefix}.channel", channel, index, name)
            builder.add(f"{prefix}.channel_residual", Op("residual", "add", (d,), (d,), 0, d, d), index, name)
            builder.graph.add_edge(residual, f"{prefix}.channel_residual")
        nodes = [builder.graph.nodes[n] for n in builder.added[before:]]
        summaries.append(LayerSummary(
            index, name, block.mixer.kind, block.channel.kind,
            params=sum(n["params"] for n in nodes), flops=sum(n["flops"] for n in nodes),
            decode_flops=sum(n["decode_flops"] for n in nodes), state_bytes=sum(n["state_bytes"] for n in nodes),
            kv_bytes=sum(n["kv_bytes"] for n in nodes), kernels=kernels[name]))
    builder.add("final_norm", norm("final_norm", spec.norm.kind, d), None, None)
    head_params = 0 if spec.tie_embeddings else d * vocab
    builder.add("head", Op("head", "linear", (d,), (vocab,), head_params, 2.0 * d * vocab, 2.0 * d * vocab),
                None, None)
    return Plan(spec, builder.graph, summaries, target)


def reference_warnings(spec: Spec, target: Target) -> list[Problem]:
    """One problem per block whose layers will run the plain-PyTorch reference on `target` although their kind
    has generated kernels, at the field whose size keeps them off; `spec` must be resolved."""
    names = layer_names(spec)
    problems = []
    for name, planned in block_kernels(spec, target).items():
        if planned.path != "reference":
            continue
        layers = [str(i) for i, n in enumerate(names) if n == name]
        where = ("blocks", name, "mixer") + ((planned.field,) if planned.field else ())
        problems.append(Problem(where, f"layer{'s' if len(layers) > 1 else ''} {', '.join(layers)} (block "
                                f"`{name}`) will run the slow plain-PyTorch reference on a GPU, not the generated "
                                f"kernels: {planned.reason.split(';')[0]}",
                                hint=planned.reason.split("; ", 1)[1] if "; " in planned.reason else None))
    return problems
