"""The ops a planned layer is made of, with their closed-form costs (written from the papers, not
measured), and the builders the mixer kinds share.

An op's fields: op (what it computes), shape_in/out (per-token widths), params (learned
parameters; must equal the built module's), flops (forward per token at context max_len),
decode_flops (per generated token with a cache), state_bytes (fixed recurrent state per
sequence), kv_bytes (KV cache per token of context).
"""

from __future__ import annotations

from dataclasses import dataclass


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


def scan_flops(heads: int, chunk: int, head_dim: int, state: int) -> tuple[float, float]:
    """(chunked forward per token, one recurrent step) of a semiseparable scan: intra-chunk C B^T and
    its product with x over half a chunk on average, plus writing and reading the chunk state."""
    forward = heads * (chunk * (state + head_dim) + 4.0 * head_dim * state)
    return forward, heads * 4.0 * head_dim * state
