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

from dataclasses import dataclass

import networkx as nx

from composer.schedule import layer_names
from composer.resolve import resolve
from composer.spec import (AttentionMixer, LowrankMixer, MLPChannel, MonarchMixer, MonarchMLPChannel,
                           QuasiseparableMixer, SemiseparableMixer, Spec, SwiGLUChannel)

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
TAYLOR_EXTRA = {"taylor"}


@dataclass(frozen=True)
class Op:
    name: str
    op: str
    shape_in: tuple
    shape_out: tuple
    params: int = 0
    flops: float = 0.0
    decode_flops: float = 0.0
    state_bytes: int = 0
    kv_bytes: int = 0


def linear(name: str, d_in: int, d_out: int, bias: bool = False) -> Op:
    return Op(name, "linear", (d_in,), (d_out,), d_in * d_out + (d_out if bias else 0),
              2.0 * d_in * d_out, 2.0 * d_in * d_out)


def norm(name: str, kind: str, width: int) -> Op:
    return Op(name, kind, (width,), (width,), width * (2 if kind == "layernorm" else 1), 4.0 * width, 4.0 * width)


def _mapped_dim(feature_map: str, f: int) -> int:
    return 1 + f + f * f if feature_map == "taylor" else f


def attention_ops(m: AttentionMixer, d: int, max_len: int, nbytes: int) -> list[Op]:
    q, kv = m.heads * m.head_dim, m.kv_heads * m.head_dim
    context = min(m.window, max_len) if m.window else max_len
    mean_context = context / 2 if m.causal and not m.window else context  # causal: on average half the keys
    core = 4.0 * m.heads * m.head_dim * mean_context  # QK^T and PV
    return [linear("q_proj", d, q, m.bias), linear("k_proj", d, kv, m.bias), linear("v_proj", d, kv, m.bias),
            Op("attention", "attention", (q + 2 * kv,), (q,), 0, core, 4.0 * m.heads * m.head_dim * context,
               kv_bytes=2 * kv * nbytes),
            linear("o_proj", q, d, m.bias)]


def _scan_flops(heads: int, chunk: int, head_dim: int, state: int) -> tuple[float, float]:
    """(chunked forward per token, one recurrent step): intra-chunk C B^T and its product with x
    over half a chunk on average, plus writing and reading the chunk state."""
    forward = heads * (chunk * (state + head_dim) + 4.0 * head_dim * state)
    return forward, heads * 4.0 * head_dim * state


def state_space_ops(m, d: int, nbytes: int, directions: int) -> list[Op]:
    inner, bc = m.heads * m.head_dim, directions * 2 * m.groups * m.state
    data_decay = isinstance(m, QuasiseparableMixer) or m.decay == "data"
    dt = directions * m.heads if data_decay else 0
    proj_out = (inner if m.gate else 0) + inner + bc + dt
    ops = [linear("in_proj", d, proj_out, m.bias)]
    if m.conv:
        channels = inner + bc
        ops.append(Op("conv1d", "conv1d", (channels,), (channels,), channels * m.conv + channels,
                      2.0 * channels * m.conv, 2.0 * channels * m.conv,
                      state_bytes=channels * (m.conv - 1) * nbytes))
    decay_params = (2 * m.heads if data_decay else m.heads if m.decay == "fixed" else 0)
    forward, step = _scan_flops(m.heads, m.chunk, m.head_dim, m.state)
    scan_params = decay_params + (m.heads if m.skip else 0) + (inner * m.heads if directions == 2 else 0)
    ops.append(Op("scan", "ssd_scan" if directions == 1 else "quasiseparable_scan", (inner + bc + dt,), (inner,),
                  scan_params, directions * forward, directions * step,
                  state_bytes=directions * m.heads * m.head_dim * m.state * 4))
    if m.out_norm:
        ops.append(Op("out_norm", "gated_rmsnorm" if m.gate else "rmsnorm", (inner,), (inner,), inner,
                      5.0 * inner, 5.0 * inner))
    ops.append(linear("out_proj", inner, d, m.bias))
    return ops


def lowrank_ops(m: LowrankMixer, d: int) -> list[Op]:
    qk, v = m.heads * m.feature_dim, m.heads * m.head_dim
    mapped = _mapped_dim(m.feature_map, m.feature_dim)
    values = m.head_dim + (1 if m.normalize else 0)
    forward, step = _scan_flops(m.heads, m.chunk, values, mapped)
    return [linear("q_proj", d, qk), linear("k_proj", d, qk), linear("v_proj", d, v),
            Op("scan", "linear_attention", (2 * qk + v,), (v,), 0, forward, step,
               state_bytes=m.heads * values * mapped * 4),
            linear("o_proj", v, d)]


def monarch_ops(m: MonarchMixer, d: int, max_len: int) -> list[Op]:
    m1, m2 = m.blocks, max_len // m.blocks
    mix_flops = (2.0 * max_len if m.causal else 2.0 * (m1 + m2)) * d  # causal reference is the dense tril form
    return [linear("in_proj", d, (2 if m.gate else 1) * d),
            Op("monarch", "monarch", (d,), (d,), m.heads * (m2 * m1 * m1 + m1 * m2 * m2), mix_flops, 0.0),
            linear("out_proj", d, d)]


def channel_ops(c, d: int) -> list[Op]:
    if isinstance(c, MLPChannel):
        return [linear("fc1", d, c.hidden, c.bias), linear("fc2", c.hidden, d, c.bias)]
    if isinstance(c, SwiGLUChannel):
        return [linear("gate_proj", d, c.hidden, c.bias), linear("up_proj", d, c.hidden, c.bias),
                linear("down_proj", c.hidden, d, c.bias)]
    if isinstance(c, MonarchMLPChannel):
        def monarch_linear(name: str, d_in: int, d_out: int) -> Op:
            params = d_in * d_out // c.blocks + d_out * d_out // c.blocks + (d_out if c.bias else 0)
            flops = 2.0 * (d_in * d_out + d_out * d_out) / c.blocks
            return Op(name, "monarch_linear", (d_in,), (d_out,), params, flops, flops)
        return [monarch_linear("fc1", d, c.hidden), monarch_linear("fc2", c.hidden, d)]
    return []


def mixer_ops(m, d: int, max_len: int, nbytes: int) -> list[Op]:
    if isinstance(m, AttentionMixer):
        return attention_ops(m, d, max_len, nbytes)
    if isinstance(m, SemiseparableMixer):
        return state_space_ops(m, d, nbytes, directions=1)
    if isinstance(m, QuasiseparableMixer):
        return state_space_ops(m, d, nbytes, directions=2)
    if isinstance(m, LowrankMixer):
        return lowrank_ops(m, d)
    if isinstance(m, MonarchMixer):
        return monarch_ops(m, d, max_len)
    raise TypeError(f"no planner costs for mixer {type(m).__name__}")


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


@dataclass
class Plan:
    spec: Spec            # resolved
    graph: nx.DiGraph
    layers: list[LayerSummary]

    def total(self, field: str) -> float:
        return sum(data.get(field, 0) for _, data in self.graph.nodes(data=True))

    @property
    def params(self) -> int:
        return int(self.total("params"))

    @property
    def train_flops_per_token(self) -> float:
        return 3.0 * self.total("flops")  # forward + backward (twice the forward)

    def inference_state_bytes(self, context: int | None = None) -> int:
        """Cache for one sequence at `context` tokens: fixed state plus KV cache."""
        context = self.spec.max_len if context is None else context
        return int(self.total("state_bytes") + self.total("kv_bytes") * context)


class _GraphBuilder:
    def __init__(self, nbytes: int):
        self.graph, self.nbytes, self.last = nx.DiGraph(), nbytes, None

    def add(self, node: str, op: Op, layer: int | None, block: str | None, after: str | None = "last") -> str:
        self.graph.add_node(node, op=op.op, layer=layer, block=block, shape_in=op.shape_in, shape_out=op.shape_out,
                            params=op.params, flops=op.flops, decode_flops=op.decode_flops,
                            act_bytes=op.shape_out[0] * self.nbytes, state_bytes=op.state_bytes,
                            kv_bytes=op.kv_bytes)
        source = self.last if after == "last" else after
        if source is not None:
            self.graph.add_edge(source, node)
        self.last = node
        return node

    def chain(self, prefix: str, ops: list[Op], layer: int, block: str) -> None:
        for op in ops:
            self.add(f"{prefix}.{op.name}", op, layer, block)


def plan(spec: Spec) -> Plan:
    """The op graph of `spec` (resolved first), with per-layer summaries."""
    spec = resolve(spec)
    d, nbytes = spec.d_model, DTYPE_BYTES[spec.dtype]
    builder = _GraphBuilder(nbytes)
    vocab = spec.padded_vocab
    builder.add("embedding", Op("embedding", "embedding", (1,), (d,), vocab * d), None, None)
    summaries = []
    for index, name in enumerate(layer_names(spec)):
        block, prefix = spec.blocks[name], f"L{index}"
        residual = builder.last
        before = set(builder.graph.nodes)
        builder.add(f"{prefix}.mixer_norm", norm("mixer_norm", block.norm.kind, d), index, name)
        builder.chain(f"{prefix}.mixer", mixer_ops(block.mixer, d, spec.max_len, nbytes), index, name)
        builder.add(f"{prefix}.mixer_residual", Op("residual", "add", (d,), (d,), 0, d, d), index, name)
        builder.graph.add_edge(residual, f"{prefix}.mixer_residual")
        channel = channel_ops(block.channel, d)
        if channel:
            residual = builder.last
            builder.add(f"{prefix}.channel_norm", norm("channel_norm", block.norm.kind, d), index, name)
            builder.chain(f"{prefix}.channel", channel, index, name)
            builder.add(f"{prefix}.channel_residual", Op("residual", "add", (d,), (d,), 0, d, d), index, name)
            builder.graph.add_edge(residual, f"{prefix}.channel_residual")
        nodes = [builder.graph.nodes[n] for n in set(builder.graph.nodes) - before]
        summaries.append(LayerSummary(
            index, name, block.mixer.kind, block.channel.kind,
            params=sum(n["params"] for n in nodes), flops=sum(n["flops"] for n in nodes),
            decode_flops=sum(n["decode_flops"] for n in nodes), state_bytes=sum(n["state_bytes"] for n in nodes),
            kv_bytes=sum(n["kv_bytes"] for n in nodes)))
    builder.add("final_norm", norm("final_norm", spec.norm.kind, d), None, None)
    head_params = 0 if spec.tie_embeddings else d * vocab
    builder.add("head", Op("head", "linear", (d,), (vocab,), head_params, 2.0 * d * vocab, 2.0 * d * vocab),
                None, None)
    return Plan(spec, builder.graph, summaries)
