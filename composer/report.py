"""Human-readable and machine-readable views of a Plan: the per-layer table, JSON, DOT."""

from __future__ import annotations

import json

import networkx as nx
from rich.table import Table

from composer.kernels.plan import Target
from composer.planner import Plan


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M'. Exact integers below 10k are printed as they are."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor and abs(n) >= 1e4:
            return f"{n / factor:.3g}{suffix}{unit}"
    return f"{n:g}{unit}"


def human_bytes(n: float) -> str:
    for factor, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= factor:
            return f"{n / factor:.3g} {suffix}"
    return f"{int(n)} B"


def layer_table(plan: Plan) -> Table:
    spec = plan.spec
    table = Table(title=f"{spec.name}: d_model {spec.d_model}, {len(plan.layers)} layers, "
                        f"vocab {spec.padded_vocab}, context {spec.max_len}, {spec.dtype}")
    for column in ("layer", "block", "mixer", "channel", "params", "fwd FLOP/token", "decode FLOP/token",
                   "fixed state", "KV / token", "runs"):
        table.add_column(column, justify="right" if column not in ("block", "mixer", "channel", "runs") else "left")
    for row in plan.layers:
        table.add_row(str(row.index), row.block, row.mixer, row.channel, f"{row.params:,}", human(row.flops),
                      human(row.decode_flops), human_bytes(row.state_bytes) if row.state_bytes else "-",
                      human_bytes(row.kv_bytes) if row.kv_bytes else "-", row.kernels.path)
    return table


def target_text(target: Target) -> str:
    sms = f"{target.multiprocessors} multiprocessors" if target.on_gpu else "no multiprocessors"
    return f"kernels planned for {target.gpu} ({sms}), {target.precision}, {target.mode}"


def kernels_text(plan: Plan) -> str:
    """What runs for each block's sequence mixer, and why: generated kernels (how many specialisations), the
    reference (which size keeps it off them) or PyTorch ops (its kind has no kernels)."""
    lines = [target_text(plan.target)]
    seen = set()
    for row in plan.layers:
        if row.block in seen:
            continue
        seen.add(row.block)
        k = row.kernels
        count = len(k.calls)
        detail = (f"{count} specialisation{'' if count == 1 else 's'} (mixc kernels lists them)"
                  if k.path == "generated" else k.reason)
        lines.append(f"  block {row.block}: {k.path}: {detail}")
    return "\n".join(lines)


def _layer_json(row) -> dict:
    data = {name: value for name, value in vars(row).items() if name != "kernels"}
    data["kernels"] = {"path": row.kernels.path, "reason": row.kernels.reason,
                       "calls": [{"template": c.template, "constants": dict(c.constants), "when": c.when}
                                 for c in row.kernels.calls]}
    return data


def totals(plan: Plan) -> dict:
    return {
        "params": plan.params,
        "forward_flops_per_token": plan.total("flops"),
        "train_flops_per_token": plan.train_flops_per_token,
        "decode_flops_per_token": plan.total("decode_flops"),
        "activation_bytes_per_token": plan.total("act_bytes"),
        "fixed_state_bytes": int(plan.total("state_bytes")),
        "kv_bytes_per_token": int(plan.total("kv_bytes")),
        "inference_state_bytes_at_max_len": plan.inference_state_bytes(),
        # what allocate_cache(1, max_len) holds (a window's ring buffer its slots only); None: cannot decode
        "decode_cache_bytes_at_max_len": None if plan.decode_problem() else plan.cache_bytes(),
    }


def totals_text(plan: Plan) -> str:
    t = totals(plan)
    return "\n".join([
        f"parameters            {t['params']:,}",
        f"FLOPs / token         forward {human(t['forward_flops_per_token'])}, "
        f"train {human(t['train_flops_per_token'])}, decode {human(t['decode_flops_per_token'])}",
        f"activations / token   {human_bytes(t['activation_bytes_per_token'])} ({plan.spec.dtype})",
        f"inference state       fixed {human_bytes(t['fixed_state_bytes'])} + KV "
        f"{human_bytes(t['kv_bytes_per_token'])}/token = {human_bytes(t['inference_state_bytes_at_max_len'])} "
        f"at {plan.spec.max_len} tokens",
        decode_cache_text(plan),
    ])


def decode_cache_text(plan: Plan) -> str:
    """The cache `allocate_cache(1, max_len)` holds (a window's ring buffer counts its slots only)."""
    problem = plan.decode_problem()
    if problem is not None:
        return f"decode cache          none: {problem}"
    return (f"decode cache          {human_bytes(plan.cache_bytes())} a sequence at {plan.spec.max_len} tokens "
            f"({plan.spec.dtype} keys, values and conv inputs; fp32 states)")


def plan_json(plan: Plan) -> str:
    graph = nx.node_link_data(plan.graph, edges="edges")
    return json.dumps({"spec": plan.spec.model_dump(), "totals": totals(plan),
                       "layers": [_layer_json(row) for row in plan.layers], "graph": graph}, indent=2, default=list)


def plan_dot(plan: Plan) -> str:
    lines = [f'digraph "{plan.spec.name}" {{', "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
    for node, data in plan.graph.nodes(data=True):
        label = f"{node}\\n{data['op']} {data['shape_in']}->{data['shape_out']}"
        if data["params"]:
            label += f"\\n{human(data['params'])} params"
        lines.append(f'  "{node}" [label="{label}"];')
    lines += [f'  "{a}" -> "{b}";' for a, b in plan.graph.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"
