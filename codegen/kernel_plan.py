"""The kernel specialisations a spec needs on a target: one per distinct set of constants, whatever the
number of layers or blocks that share it, listed from the plan's per-layer decisions (composer.planner),
so this listing is the set of modules the run renders, not an estimate of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from composer.codegen.render import render_kernel
from composer.kernels.plan import Target
from composer.planner import block_kernels
from composer.spec import Spec

NORM_TEMPLATE = "gated_rmsnorm.py.jinja"
SCAN_NAMING = {"P", "N", "Q", "HEADS_PER_GROUP", "DECAY", "OPERAND"}  # the constants a scan's file name shows


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
        if not SCAN_NAMING <= c.keys():  # a family whose constants name other sizes: the digest alone
            return f"{stem}_{digest}.py"
        form = "_fused" if c.get("FUSED") else ""
        sizes = f"P{c['P']}_N{c['N']}_Q{c['Q']}_hpg{c['HEADS_PER_GROUP']}"
        return f"{stem}{form}_{sizes}_{c['DECAY']}_{c['OPERAND']}_{digest}.py"

    def source(self, spec_name: str) -> str:
        runs = {"runs": self.runs} if self.runs else {}
        return render_kernel(self.template, dict(self.constants),
                             {"spec": spec_name, "blocks": ", ".join(self.blocks), **runs})


def kernel_plan(spec: Spec, target: Target) -> tuple[list[Specialisation], dict[str, str]]:
    """(specialisations, {block: why} for blocks whose mixer runs plain PyTorch) on `target` (its precision and
    mode pick the specialisations); `spec` must be resolved."""
    users: dict[tuple, tuple[list[str], list[str]]] = {}
    off_kernels = {}
    for name, planned in block_kernels(spec, target).items():
        if planned.path != "generated":
            off_kernels[name] = f"{planned.path}: {planned.reason}"
        for call in planned.calls:
            blocks, whens = users.setdefault((call.template, call.constants), ([], []))
            if name not in blocks:
                blocks.append(name)
            if call.when not in whens:
                whens.append(call.when)
    specialisations = [Specialisation(template, constants, tuple(blocks), " | ".join(whens) if all(whens) else "")
                       for (template, constants), (blocks, whens) in users.items()]
    return specialisations, off_kernels
