"""Which kernel specialisations a spec needs: one per distinct set of constants, whatever the
number of layers or blocks that share it.

The constants come from the same function the launcher calls (`call_constants`), fed meta
tensors shaped and typed as the layers feed the kernels at run time, so this listing is the
set of modules a training run renders, not an estimate of it (or, with `inference`, a run without
gradients: forwards that save nothing for a backward, and no backward). The layers hand the kernels the
activations' dtype: fp32 by default, bf16 under `--precision bf16` (autocast).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch

from composer.codegen.render import render_kernel
from composer.kernels.lowrank.reference import feature_dim_out
from composer.kernels.semiseparable.tiles import triton_supports
from composer.schedule import layer_names
from composer.spec import LowrankMixer, QuasiseparableMixer, SemiseparableMixer, Spec

SSD_TEMPLATES = ("ssd_forward.py.jinja", "ssd_backward.py.jinja")
NORM_TEMPLATE = "gated_rmsnorm.py.jinja"
ACTIVATION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # by training precision


@dataclass(frozen=True)
class Specialisation:
    template: str
    constants: tuple  # sorted (name, value) pairs
    blocks: tuple     # names of the blocks that use it
    runs: str = ""    # when the launcher picks it where the batch decides, alternatives split by " | "; "" always

    @property
    def file_name(self) -> str:
        """The sizes a reader looks for, then a digest of every constant: specialisations that differ only
        in flags or tiles (skip or none, the split form's tiles at two batch sizes) never share a file."""
        c = dict(self.constants)
        stem = self.template.split(".", 1)[0]
        digest = hashlib.sha1(repr(self.constants).encode()).hexdigest()[:8]
        if self.template == NORM_TEMPLATE:
            return f"{stem}_W{c['W']}_{'gated' if c['HAS_GATE'] else 'ungated'}_{digest}.py"
        form = "_fused" if c.get("FUSED") else ""
        sizes = f"P{c['P']}_N{c['N']}_Q{c['Q']}_hpg{c['HEADS_PER_GROUP']}"
        return f"{stem}{form}_{sizes}_{c['DECAY']}_{c['OPERAND']}_{digest}.py"

    def source(self, spec_name: str) -> str:
        runs = {"runs": self.runs} if self.runs else {}
        return render_kernel(self.template, dict(self.constants),
                             {"spec": spec_name, "blocks": ", ".join(self.blocks), **runs})


def kernel_sizes(mixer) -> tuple[int, int, int] | None:
    """(head dim, state or mapped feature dim, chunk) of a resolved mixer of a family the SSD kernels
    serve, whether or not they tile; None for the other families."""
    if isinstance(mixer, (SemiseparableMixer, QuasiseparableMixer)):
        return mixer.head_dim, mixer.state, mixer.chunk
    if isinstance(mixer, LowrankMixer):
        return mixer.head_dim, feature_dim_out(mixer.feature_map, mixer.feature_dim), mixer.chunk
    return None


def _scans(mixer) -> list[dict] | None:
    """The SSD-kernel calls one layer of this mixer makes, as the facts their constants depend on
    (value dim P, groups G, state N, decay, dt, skip D, final state); None when it runs on the reference."""
    sizes = kernel_sizes(mixer)
    if sizes is None or not triton_supports(*sizes):
        return None
    head_dim, state, _ = sizes
    if isinstance(mixer, LowrankMixer):
        if not mixer.causal:  # the state after the whole sequence is one product: no scan, no kernel
            return []
        from composer.kernels.lowrank.chunk import NORMALISER_WIDTH  # imports triton
        values = dict(P=head_dim, G=mixer.heads, N=state, decays=mixer.decay == "fixed", dt=False, D=False,
                      final=False)
        return [values, {**values, "P": NORMALISER_WIDTH}] if mixer.normalize else [values]
    data = isinstance(mixer, QuasiseparableMixer) or mixer.decay == "data"
    return [dict(P=head_dim, G=mixer.groups, N=state, decays=data or mixer.decay == "fixed", dt=data,
                 D=isinstance(mixer, SemiseparableMixer) and mixer.skip, final=False)]


def _ssd_constants(mixer, scan: dict, dtype: torch.dtype, inference: bool = False) -> list[tuple[str, dict, str]]:
    """The forward and backward constants of one scan, for each default tuning the batch may pick; both
    forward forms where a tuning leaves the choice to the batch (the fused form where its programs keep the
    GPU busy, the split form elsewhere). inference: the forwards a run without gradients takes (one
    tuning, whatever the batch: `default_tuning`'s), saving nothing, and no backward."""
    from composer.kernels.semiseparable.chunk import call_constants  # imports triton
    from composer.kernels.semiseparable.tuning import default_tuning, default_tunings, form_rules

    meta = dict(device="meta", dtype=dtype)
    x = torch.empty(1, mixer.chunk, mixer.heads, scan["P"], **meta)
    B = torch.empty(1, mixer.chunk, scan["G"], scan["N"], **meta)
    log_a = torch.empty(1, mixer.chunk, mixer.heads, **meta) if scan["decays"] else None
    kernels = []
    tunings = [(default_tuning(x, B, needs_grad=False), "")] if inference else default_tunings(x, B)
    for tuning, when in tunings:
        for fused in [False, True] if tuning.fused is None else [tuning.fused]:
            forward, backward = call_constants(x, log_a, B, mixer.chunk, False, scan["final"],
                                               dataclasses.replace(tuning, fused=fused), has_dt=scan["dt"],
                                               has_D=scan["D"], needs_grad=not inference)
            form = "" if tuning.fused is not None else form_rules(tuning, scan["P"])[0 if fused else 1]
            conditions = [c for c in (when, form) if c]
            runs = " and ".join(f"({c})" for c in conditions) if len(conditions) > 1 else "".join(conditions)
            kernels.append((SSD_TEMPLATES[0], forward, runs))
            # tunings that share their backward list it once
            if not inference and (SSD_TEMPLATES[1], backward, "") not in kernels:
                kernels.append((SSD_TEMPLATES[1], backward, ""))
    return kernels


def _norm_constants(mixer) -> list[tuple[str, dict, str]]:
    """The state-space layers' fused output norm (any width: it masks a power-of-two tile)."""
    if not isinstance(mixer, (SemiseparableMixer, QuasiseparableMixer)) or not mixer.out_norm:
        return []
    from composer.kernels.norms.gated_rmsnorm import norm_constants  # imports triton
    return [(NORM_TEMPLATE, norm_constants(mixer.heads * mixer.head_dim, mixer.gate), "")]


def kernel_plan(spec: Spec, precision: str = "fp32",
                inference: bool = False) -> tuple[list[Specialisation], list[str]]:
    """(specialisations, blocks whose mixer core runs on the reference because no kernel fits it) for
    training at `precision` ("fp32" or "bf16"), or with `inference` for a run without gradients (under
    torch.no_grad) at that precision; `spec` must be resolved."""
    dtype = ACTIVATION_DTYPES[precision]
    users: dict[tuple, list[str]] = {}
    on_reference = []
    for name in dict.fromkeys(layer_names(spec)):
        mixer = spec.blocks[name].mixer
        scans = _scans(mixer)
        if scans is None:
            on_reference.append(name)
        kernels = [pair for scan in scans or [] for pair in _ssd_constants(mixer, scan, dtype, inference)]
        for template, constants, when in kernels + _norm_constants(mixer):
            blocks, whens = users.setdefault((template, tuple(sorted(constants.items()))), ([], []))
            if name not in blocks:  # a head dim of 16 makes a linear attention's two scans one
                blocks.append(name)
            if when not in whens:
                whens.append(when)
    specialisations = [Specialisation(template, constants, tuple(blocks), " | ".join(whens) if all(whens) else "")
                       for (template, constants), (blocks, whens) in users.items()]
    return specialisations, on_reference
