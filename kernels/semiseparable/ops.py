"""The SSD chunked scan as PyTorch custom ops, which torch.compile(fullgraph=True) and torch.export see whole.

`NAMESPACE::ssd_forward` runs the forward kernels and returns y, the final state and what the backward
reads; its autograd formula calls `NAMESPACE::ssd_backward`. `NAMESPACE::ssd_step` is one decoding step
(forward only). They are `torch.library.custom_op`s, opaque to the compiler: the launch path
(rendered-module loading, the side stream, grid arithmetic, scratch sized by the template) runs inside
them as plain Python that no tracer enters, on the GPU or under the CPU interpreter alike, and their fake
kernels give the outputs' shapes from the constants alone. (`triton_op` would let Inductor see the
kernels, but it traces the launcher's body, so all of that would have to be traceable.)

An op's schema carries tensors, numbers and strings, not dicts, so a call's constants (the forward's, the
backward's, a segmented walk's segments, state passing and pieces, and the backward's segments) travel as
`constants_key`: a string that spells
them (`repr` of the dicts' items), looked up
in a process-wide table and parsed back where the table lacks it (a program exported by another
process). Custom ops return no None: an output absent under the constants (the final state when not
returned, the saved tensors of an inference forward, cum without decay) is an empty tensor here and
None again in the Python wrapper.

Eager calls do not come here: `ssd_chunked_triton` runs `SSDChunked` directly, since the dispatcher
and the op's Python autograd add tens of microseconds a call on the host; both paths run the same
`_forward` and `_backward`. Under torch.compile and torch.export (`torch.compiler.is_compiling()`) it
calls `ssd_chunked_op`.
"""

from __future__ import annotations

import ast
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from composer.kernels.op_namespace import NAMESPACE
from composer.kernels.semiseparable.chunk import (_backward, _forward, call_launch, default_tuning,
                                                 forward_outputs)
from composer.kernels.semiseparable.step import _step, step_constants
from composer.kernels.semiseparable.tuning import SSDTuning

OPS = getattr(torch.ops, NAMESPACE)  # the ops below, called by name


class CallConstants(NamedTuple):
    """What one op call runs: the forward's and the backward's constants and, for a segmented fused walk,
    its segments, the constants of the state passing over them and its pieces a segment (`plan.ForwardLaunch`),
    and the backward's state-passing segments (`plan.BackwardLaunch`)."""

    forward: dict
    backward: dict
    segments: int = 1
    segment_state: dict | None = None
    state_pieces: int = 1
    backward_segments: int = 1


_CONSTANTS: dict[str, CallConstants] = {}


def constants_key(forward: dict, backward: dict, segments: int = 1, segment_state: dict | None = None,
                  state_pieces: int = 1, backward_segments: int = 1) -> str:
    """The string an op call carries for these constants; registers them under it."""
    state_items = None if segment_state is None else tuple(segment_state.items())
    key = repr((tuple(forward.items()), tuple(backward.items()), segments, state_items, state_pieces,
                backward_segments))
    _CONSTANTS.setdefault(key, CallConstants(forward, backward, segments, segment_state, state_pieces,
                                             backward_segments))
    return key


def constants_of(key: str) -> CallConstants:
    """The constants `constants_key` gave `key`: a dict lookup, or (a key from another process, as in a loaded
    exported program) its items parsed back."""
    call = _CONSTANTS.get(key)
    if call is None:
        forward, backward, segments, state_items, state_pieces, backward_segments = ast.literal_eval(key)
        call = _CONSTANTS[key] = CallConstants(dict(forward), dict(backward), segments,
                                               None if state_items is None else dict(state_items), state_pieces,
                                               backward_segments)
    return call


def _empty_for_none(tensors, like: Tensor) -> tuple:
    return tuple(like.new_empty(0) if t is None else t for t in tensors)


@torch.library.custom_op(f"{NAMESPACE}::ssd_forward", mutates_args=())
def ssd_forward(x: Tensor, dt: Optional[Tensor], log_a: Optional[Tensor], B: Tensor, C: Tensor,
                initial_state: Optional[Tensor], D: Optional[Tensor],
                key: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """y, the final state, scores, states and cum as `chunk._forward` (empty where it gives None)."""
    call = constants_of(key)
    return _empty_for_none(_forward(call.forward, x, dt, log_a, B, C, initial_state, D, call.segments,
                                    call.segment_state, call.state_pieces), x)


@ssd_forward.register_fake
def _(x, dt, log_a, B, C, initial_state, D, key):
    return _empty_for_none(forward_outputs(constants_of(key)[0], x, log_a, B), x)


@torch.library.custom_op(f"{NAMESPACE}::ssd_backward", mutates_args=())
def ssd_backward(x: Tensor, dt: Optional[Tensor], B: Tensor, C: Tensor, initial_state: Optional[Tensor],
                 D: Optional[Tensor], scores: Tensor, states: Tensor, cum: Optional[Tensor], dy: Tensor,
                 final_state_grad: Optional[Tensor],
                 key: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """dx, ddt, dlog_a, dB, dC, d(initial_state), dD as `chunk._backward` (empty where it gives None)."""
    call = constants_of(key)
    grads = _backward(call.backward, x, dt, B, C, initial_state, D, scores, states, cum, dy, final_state_grad,
                      call.backward_segments)
    return _empty_for_none(grads, x)


@ssd_backward.register_fake
def _(x, dt, B, C, initial_state, D, scores, states, cum, dy, final_state_grad, key):
    b, L, H, _ = x.shape
    fp32 = dict(dtype=torch.float32)
    grads = (torch.empty_like(x), None if dt is None else x.new_empty(b, L, H, **fp32),
             None if cum is None else x.new_empty(b, L, H, **fp32), torch.empty_like(B), torch.empty_like(C),
             None if initial_state is None else torch.empty_like(initial_state),
             None if D is None else x.new_empty(H, **fp32))
    return _empty_for_none(grads, x)


def _setup_context(ctx, inputs, output):
    x, dt, log_a, B, C, initial_state, D, key = inputs
    _, _, scores, states, cum = output
    ctx.save_for_backward(x, dt, B, C, initial_state, D, scores, states, None if log_a is None else cum)
    ctx.key = key
    ctx.log_a_dtype = None if log_a is None else log_a.dtype


def _backward_formula(ctx, dy, final_state_grad, *saved_grads):
    """As `SSDChunked.backward`: gradients in their inputs' dtypes, None where an input is absent."""
    x, dt, B, C, initial_state, D, scores, states, cum = ctx.saved_tensors
    if constants_of(ctx.key)[1]["RETURN_FINAL_STATE"]:
        if final_state_grad is None:  # the final state was returned but not used
            b, _, H, P = x.shape
            final_state_grad = x.new_zeros(b, H, P, B.shape[3])
        final_state_grad = final_state_grad.contiguous()
    else:
        final_state_grad = None
    dy = torch.zeros_like(x) if dy is None else dy.contiguous()
    dx, ddt, dlog_a, dB, dC, initial_state_grad, dD = OPS.ssd_backward(
        x, dt, B, C, initial_state, D, scores, states, cum, dy, final_state_grad, ctx.key)
    return (dx, None if dt is None else ddt.to(dt.dtype), None if cum is None else dlog_a.to(ctx.log_a_dtype),
            dB, dC, None if initial_state is None else initial_state_grad, None if D is None else dD.to(D.dtype),
            None)


ssd_forward.register_autograd(_backward_formula, setup_context=_setup_context)


class TensorFacts(NamedTuple):
    """What `default_tuning` and `call_constants` read of a tensor: its shape, dtype and device."""

    shape: tuple
    dtype: torch.dtype
    device: torch.device


@torch._dynamo.assume_constant_result
def traced_call_key(x_facts: tuple, B_facts: tuple, decays: bool, chunk_len: int, has_initial_state: bool,
                    return_final_state: bool, tuning: SSDTuning | None, has_dt: bool, has_D: bool,
                    needs_grad: bool) -> str:
    """`constants_key` of a call's constants, from plain facts: Dynamo runs this once while tracing and
    keeps the string (their lru_caches would each break the graph if traced). The facts are constants of
    the traced frame (Dynamo guards on them; tuning by identity), the length excepted (`_facts`)."""
    x, B = TensorFacts(*x_facts), TensorFacts(*B_facts)
    tuning = tuning or default_tuning(x, B, needs_grad)
    launch, backward = call_launch(x, True if decays else None, B, chunk_len, has_initial_state,
                                   return_final_state, tuning, has_dt=has_dt, has_D=has_D, needs_grad=needs_grad)
    return constants_key(launch.constants, backward.constants, launch.segments, launch.segment_state,
                         launch.state_pieces, backward.segments)


def _facts(t: Tensor, length_dim: int | None = None) -> tuple:
    """`TensorFacts` of t with the length (dim length_dim) as 1: no constant depends on it, so a dynamic length
    (torch.compile's automatic dynamic shapes) traces. Another dynamic size, such as the batch, which picks
    the forward's form on CUDA, cannot be passed as a constant, and Dynamo says so."""
    return tuple(1 if dim == length_dim else size for dim, size in enumerate(t.shape)), t.dtype, t.device


def ssd_chunked_op(x, log_a, B, C, chunk_len, initial_state, return_final_state, dt, D, tuning, needs_grad):
    """`ssd_chunked_triton` (after its input checks) through the custom ops: y and the final state (None
    when return_final_state is False)."""
    key = traced_call_key(_facts(x, 1), _facts(B, 1), log_a is not None, chunk_len, initial_state is not None,
                          return_final_state, tuning, dt is not None, D is not None, needs_grad)
    inputs = (x, dt, log_a, B, C, initial_state, D)
    y, final_state, *_ = OPS.ssd_forward(*(None if t is None else t.contiguous() for t in inputs),
                                                        key)
    return y, final_state if return_final_state else None



@torch.library.custom_op(f"{NAMESPACE}::ssd_step", mutates_args=())
def ssd_step(state: Tensor, x_t: Tensor, log_a_t: Optional[Tensor], B_t: Tensor, C_t: Tensor,
             key: str) -> tuple[Tensor, Tensor]:
    """y_t and the new state, as `step.ssd_step_triton` (forward only: it has no autograd formula)."""
    return _step(constants_of(key)[0], state, x_t, log_a_t, B_t, C_t)


@ssd_step.register_fake
def _(state, x_t, log_a_t, B_t, C_t, key):
    return torch.empty_like(x_t), torch.empty_like(state)


@torch._dynamo.assume_constant_result
def traced_step_key(state_facts: tuple, B_facts: tuple, decays: bool, tuning: SSDTuning) -> str:
    """The step's `constants_key` (no backward: an empty dict), run once while tracing."""
    return constants_key(step_constants(TensorFacts(*state_facts), TensorFacts(*B_facts), decays, tuning), {})


def ssd_step_op(state, x_t, log_a_t, B_t, C_t, tuning):
    """`ssd_step_triton` (after its input checks) through the custom op."""
    key = traced_step_key(_facts(state), _facts(B_t), log_a_t is not None, tuning)
    inputs = (state, x_t, log_a_t, B_t, C_t)
    return OPS.ssd_step(*(None if t is None else t.contiguous() for t in inputs), key)
