"""The SSD chunked scan as PyTorch custom ops, which torch.compile(fullgraph=True) and torch.export see whole.

`NAMESPACE::ssd_forward` runs the forward kernels and returns y, the final state and what the backward
reads; its autograd formula calls `NAMESPACE::ssd_backward`. `NAMESPACE::ssd_step` is one decoding step
(forward only). They are `torch.library.custom_op`s, opaque to the compiler: the launch path
(rendered-module loading, the side stream, grid arithmetic, scratch sized by the template) runs inside
them as plain Python that no tracer enters, on the GPU or under the CPU interpreter alike, and their fake
kernels give the outputs' shapes from the constants alone. (`triton_op` would let Inductor see the
kernels, but it traces the launcher's body, so all of that would have to be traceable.)

An op's schema carries tensors, numbers and strings, not dicts, so a call's constants travel as
`constants_key`: a string that spells them (`repr` of the dicts' items), looked up in a process-wide table
and parsed back where the table lacks it (a program exported by another process). A forward's key spells
the whole plan variant it runs (`plan.ScanVariant`): the walk's constants, the backward's, and a fused
walk's segmented constants, state passing and `SegmentRule`, and the backward's segmented constants and
`BackwardSegmentRule`; the ops apply the rules to the batch and length they are called with, so a compiled graph
whose length is dynamic still segments where eager would.

Custom ops return no None: an output absent under the constants (the final state when not returned, the
saved tensors of an inference forward, cum without decay) is an empty tensor here and None again in the
Python wrapper.

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
from composer.kernels.semiseparable.chunk import (_backward, _forward, forward_outputs, operand_of,
                                                 plan_for_call)
from composer.kernels.semiseparable.plan import (BackwardLaunch, BackwardSegmentRule, ForwardLaunch, ScanPlan,
                                                ScanSizes, SegmentRule, backward_launch, forward_launch, spell_call)
from composer.kernels.semiseparable.plan import step_constants as plan_step_constants
from composer.kernels.semiseparable.step import _step
from composer.kernels.semiseparable.tuning import SSDTuning, from_values, tuning_values

OPS = getattr(torch.ops, NAMESPACE)  # the ops below, called by name


class CallConstants(NamedTuple):
    """What one op call runs: the forward's and the backward's constants and, for a fused walk that may run
    in segments, the segmented walk's constants, the state passing over the segments and the rule that counts
    them and its pieces, and the backward's in segments and its rule (`plan.ScanVariant`'s fields)."""

    forward: dict
    backward: dict
    segmented: dict | None = None
    segment_state: dict | None = None
    segment_rule: SegmentRule | None = None
    segmented_backward: dict | None = None
    backward_rule: BackwardSegmentRule | None = None

    def launch(self, batch: int, seq_len: int) -> ForwardLaunch:
        """The forward a call of `batch` sequences of `seq_len` steps runs (`plan.forward_launch`)."""
        return forward_launch(self.forward, self.segmented, self.segment_state, self.segment_rule, batch, seq_len)

    def backward_launch(self, batch: int, seq_len: int) -> BackwardLaunch:
        """The backward of such a call (`plan.backward_launch`)."""
        return backward_launch(self.backward, self.segmented_backward, self.backward_rule, batch, seq_len)


_CONSTANTS: dict[str, CallConstants] = {}


def constants_key(forward: dict, backward: dict, segmented: dict | None = None, segment_state: dict | None = None,
                  segment_rule: SegmentRule | None = None, segmented_backward: dict | None = None,
                  backward_rule: BackwardSegmentRule | None = None) -> str:
    """The string an op call carries for these constants (`plan.spell_call`); registers them under it."""
    key = spell_call(forward, backward, segmented, segment_state, segment_rule, segmented_backward, backward_rule)
    _CONSTANTS.setdefault(key, CallConstants(forward, backward, segmented, segment_state, segment_rule,
                                             segmented_backward, backward_rule))
    return key


def constants_of(key: str) -> CallConstants:
    """The constants `spell_call` spelled as `key`: a dict lookup, or (a key from another process, as in a
    loaded exported program, or a plan variant's own `key`) its items parsed back."""
    call = _CONSTANTS.get(key)
    if call is None:
        forward, backward, segmented, segment_state, rule, segmented_backward, backward_rule = ast.literal_eval(key)
        call = _CONSTANTS[key] = CallConstants(
            dict(forward), dict(backward), _dict(segmented), _dict(segment_state),
            None if rule is None else SegmentRule(*rule), _dict(segmented_backward),
            None if backward_rule is None else BackwardSegmentRule(*backward_rule))
    return call


def _dict(items) -> dict | None:
    return None if items is None else dict(items)


def _empty_for_none(tensors, like: Tensor) -> tuple:
    return tuple(like.new_empty(0) if t is None else t for t in tensors)


@torch.library.custom_op(f"{NAMESPACE}::ssd_forward", mutates_args=())
def ssd_forward(x: Tensor, dt: Optional[Tensor], log_a: Optional[Tensor], B: Tensor, C: Tensor,
                initial_state: Optional[Tensor], D: Optional[Tensor],
                key: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """y, the final state, scores, states and cum as `chunk._forward` (empty where it gives None)."""
    launch = constants_of(key).launch(x.shape[0], x.shape[1])
    return _empty_for_none(_forward(launch.constants, x, dt, log_a, B, C, initial_state, D, launch.segments,
                                    launch.segment_state, launch.state_pieces), x)


@ssd_forward.register_fake
def _(x, dt, log_a, B, C, initial_state, D, key):
    return _empty_for_none(forward_outputs(constants_of(key)[0], x, log_a, B), x)


@torch.library.custom_op(f"{NAMESPACE}::ssd_backward", mutates_args=())
def ssd_backward(x: Tensor, dt: Optional[Tensor], B: Tensor, C: Tensor, initial_state: Optional[Tensor],
                 D: Optional[Tensor], scores: Tensor, states: Tensor, cum: Optional[Tensor], dy: Tensor,
                 final_state_grad: Optional[Tensor],
                 key: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """dx, ddt, dlog_a, dB, dC, d(initial_state), dD as `chunk._backward` (empty where it gives None)."""
    launch = constants_of(key).backward_launch(x.shape[0], x.shape[1])
    grads = _backward(launch.constants, x, dt, B, C, initial_state, D, scores, states, cum, dy, final_state_grad,
                      launch.segments)
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
    """What `plan_for_call` reads of a tensor: its shape, dtype and device."""

    shape: tuple
    dtype: torch.dtype
    device: torch.device


def planned_key(plan: ScanPlan, x, B, needs_grad: bool) -> str:
    """The key of the variant `plan` gives these inputs: the launcher's `select`, traced (it guards on the
    batch), and the variant's own `key`, a constant string."""
    return plan.select(operand_of(x, B), needs_grad, x.shape[0]).key


@torch._dynamo.assume_constant_result
def traced_plan_key(x_facts: tuple, B_facts: tuple, decays: bool, chunk_len: int, has_initial_state: bool,
                    return_final_state: bool, tuning: tuple | None, has_dt: bool, has_D: bool,
                    needs_grad: bool) -> str:
    """`planned_key` for a call made without a plan, planned from plain facts of its tensors (`plan_for_call`):
    Dynamo runs this once while tracing (plan_for_call's lru_caches would each break the graph if traced). The
    facts and the tuning's values (`tuning_values`) are constants of the traced frame (Dynamo guards on them),
    the length excepted (`_facts`)."""
    x, B = TensorFacts(*x_facts), TensorFacts(*B_facts)
    plan = plan_for_call(x, True if decays else None, B, chunk_len, has_initial_state, return_final_state,
                         from_values(tuning), has_dt, has_D)
    return plan.select(operand_of(x, B), needs_grad, x.shape[0]).key


def _facts(t: Tensor, length_dim: int) -> tuple:
    """`TensorFacts` of t with the length (dim length_dim) as 1: no constant depends on it, so a dynamic length
    (torch.compile's automatic dynamic shapes) traces. Another dynamic size, such as the batch, which picks the
    forward's variant on CUDA, cannot be passed as a constant, and Dynamo says so: a layer's handed plan
    (`planned_key`) takes a dynamic batch."""
    shape = tuple(1 if dim == length_dim else size for dim, size in enumerate(t.shape))
    return shape, t.dtype, t.device


def ssd_chunked_op(x, log_a, B, C, chunk_len, initial_state, return_final_state, dt, D, tuning, needs_grad,
                   plan: ScanPlan | None = None):
    """`ssd_chunked_triton` (after its input checks) through the custom ops: y and the final state (None
    when return_final_state is False). plan: the layer's ScanPlan (None: planned from the tensors' facts)."""
    if plan is None:
        key = traced_plan_key(_facts(x, 1), _facts(B, 1), log_a is not None, chunk_len, initial_state is not None,
                              return_final_state, tuning_values(tuning), dt is not None, D is not None,
                              needs_grad)
    else:
        key = planned_key(plan, x, B, needs_grad)
    inputs = (x, dt, log_a, B, C, initial_state, D)
    y, final_state, *_ = OPS.ssd_forward(*(None if t is None else t.contiguous() for t in inputs), key)
    return y, final_state if return_final_state else None


@torch.library.custom_op(f"{NAMESPACE}::ssd_step", mutates_args=())
def ssd_step(state: Tensor, x_t: Tensor, log_a_t: Optional[Tensor], B_t: Tensor, C_t: Tensor,
             key: str) -> tuple[Tensor, Tensor]:
    """y_t and the new state, as `step.ssd_step_triton` (forward only: it has no autograd formula)."""
    return _step(constants_of(key).forward, state, x_t, log_a_t, B_t, C_t)


@ssd_step.register_fake
def _(state, x_t, log_a_t, B_t, C_t, key):
    return torch.empty_like(x_t), torch.empty_like(state)


@torch._dynamo.assume_constant_result
def traced_step_key(head_dim: int, state: int, heads: int, groups: int, decays: bool, block_p: int,
                    num_warps: int) -> str:
    """The step's `constants_key` (no backward: an empty dict), run once while tracing; plain values only."""
    sizes = ScanSizes(head_dim, state, 1, heads, groups, decays)
    return constants_key(plan_step_constants(sizes, SSDTuning(block_p=block_p, num_warps=num_warps)), {})


def ssd_step_op(state, x_t, log_a_t, B_t, C_t, tuning, plan: ScanPlan | None = None):
    """`ssd_step_triton` (after its input checks) through the custom op; the batch may be dynamic (no step
    constant depends on it). plan: the layer's prefill ScanPlan, whose sizes give the constants (None: the
    tensors' sizes)."""
    if plan is None:
        _, heads, head_dim, state_size = state.shape
        sizes = (head_dim, state_size, heads, B_t.shape[1], log_a_t is not None)
    else:
        sizes = (plan.sizes.head_dim, plan.sizes.state, plan.sizes.heads, plan.sizes.groups, plan.sizes.decays)
    key = traced_step_key(*sizes, tuning.block_p, tuning.num_warps)
    inputs = (state, x_t, log_a_t, B_t, C_t)
    return OPS.ssd_step(*(None if t is None else t.contiguous() for t in inputs), key)
