"""Linear attention on the generated SSD kernels: the same family, one group per head.

`linear_attention_chunked_triton` has the signature and semantics of
`reference.linear_attention_chunked`: the values are the scan's input x, the mapped keys its B and
the mapped queries its C (G = H), with no decay or a fixed one (RetNet) as log_a. The reference
folds the normaliser into one scan as an extra value channel of ones; the kernels tile the value
dim in powers of two, so here the normaliser is its own scan over a 16-wide block whose first
column is ones (16 is the smallest tile), sharing q, k and the decay. A non-causal call (no decay)
needs only the state after the whole sequence, a plain product: it runs no scan.
"""

from __future__ import annotations

import torch

from composer.kernels.lowrank.plan import NORMALISER_WIDTH
from composer.kernels.semiseparable.chunk import ssd_chunked_triton


def linear_attention_chunked_triton(q, k, v, chunk_len, causal=True, normalize=True, log_a=None, eps=1e-6,
                                    initial_state=None, return_final_state=True, plans=None):
    """y (b, L, H, P) and the final state (S, or (S, z) when normalize), as the reference; the state
    is None when return_final_state is False (a causal call then skips writing it).

    q, k (b, L, H, F) already feature-mapped; v (b, L, H, P); log_a (b, L, H) or None (no decay).
    plans: the layer's (values, normaliser) ScanPlans; None plans each scan from its tensors.
    """
    if log_a is not None and not causal:
        raise ValueError("a decay (log_a) needs causal=True")
    S0 = z0 = None
    if initial_state is not None:
        S0, z0 = initial_state if normalize else (initial_state, None)
    if not causal:
        return _non_causal(q, k, v, normalize, eps, S0, z0, return_final_state)
    values_plan, normaliser_plan = plans or (None, None)
    y, S = ssd_chunked_triton(v, log_a, k, q, chunk_len, S0, return_final_state, plan=values_plan)
    if not normalize:
        return y, S if return_final_state else None
    ones = v.new_zeros(*v.shape[:3], NORMALISER_WIDTH)
    ones[..., 0] = 1.0
    z_state0 = None
    if z0 is not None:
        z_state0 = z0.new_zeros(*z0.shape[:2], NORMALISER_WIDTH, z0.shape[2])
        z_state0[:, :, 0] = z0
    denominator, z_state = ssd_chunked_triton(ones, log_a, k, q, chunk_len, z_state0, return_final_state,
                                              plan=normaliser_plan)
    z = None if z_state is None else z_state[:, :, 0]
    return y / (denominator[..., :1] + eps), (S, z) if return_final_state else None


def _non_causal(q, k, v, normalize, eps, S0, z0, return_final_state):
    """Every query reads the state after the whole sequence. Without a decay (a non-causal call takes
    none) that state is S0 + sum_t v_t k_t^T and z0 + sum_t k_t: one product each, no scan."""
    S = torch.einsum("bthp,bthf->bhpf", v, k)
    if S0 is not None:
        S = S + S0.to(S.dtype)
    y = torch.einsum("bhpf,bthf->bthp", S.to(q.dtype), q)
    if not normalize:
        return y, S if return_final_state else None
    z = k.sum(1)
    if z0 is not None:
        z = z + z0.to(z.dtype)
    denominator = torch.einsum("bhf,bthf->bth", z.to(q.dtype), q)[..., None]
    return y / (denominator + eps), (S, z) if return_final_state else None
