"""Graph breaks, eager against torch.compile training-step time, and torch.export of a model on the kernels.

    . benchmarks/device_setup.sh && python3 benchmarks/compile.py [--spec examples/mamba2_130m.mix]
        [--batch 8 --length 2048] [--parts explain,eager,compiled,export] [--label after]

Builds the spec with backend "triton" on CUDA (fp32 parameters) and runs a training step under bf16
autocast: logits, cross entropy against random targets, loss.backward(). It reports, each part as it
finishes (`--parts` picks them; a checkout without the custom ops runs explain and eager alone):

- explain: `torch._dynamo.explain` of the forward and loss, with each distinct break reason and its count
  (the backward then runs through AOTAutograd, outside Dynamo's count);
- eager: the step's do_bench median;
- compiled: `torch.compile(step, fullgraph=True)` (default Inductor) of the whole step, loss.backward()
  included (torch._dynamo.config.trace_autograd_ops), its do_bench median and first-call (compile) time,
  and the compiled step's loss and gradients against eager's (largest relative error over parameters); both
  bf16 steps' gradients also against an fp32 step's (no autocast), the measure of which one is further off;
- compiled_emulated: the same with Inductor's `emulate_precision_casts` (it rounds where eager rounds to bf16);
- export: `torch.export.export` of the no-grad forward under autocast, its logits against eager's.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import traceback

import torch
import torch.nn.functional as F
from triton.testing import do_bench

import composer


class AutocastForward(torch.nn.Module):
    """The model's forward under bf16 autocast, as one module (what torch.export takes)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens):
        with torch.autocast(tokens.device.type, dtype=torch.bfloat16):
            return self.model(tokens)


def log(label, what, **values):
    print(json.dumps({"label": label, "what": what, **values}), flush=True)


def relative_error(got, want):
    return ((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-30)).item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", default="examples/mamba2_130m.mix")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--parts", default="explain,eager,compiled,compiled_emulated,export")
    parser.add_argument("--label", default="after")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test under TRITON_INTERPRET=1 (explain, export)")
    args = parser.parse_args()
    parts, label = args.parts.split(","), args.label

    spec = composer.load(args.spec)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = composer.build(spec, backend="triton", device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    tokens = torch.randint(0, spec.vocab, (args.batch, args.length), device=device, generator=generator)
    targets = torch.randint(0, spec.vocab, (args.batch, args.length), device=device, generator=generator)
    log(label, "setup", spec=args.spec, batch=args.batch, length=args.length, torch=torch.__version__,
        gpu=torch.cuda.get_device_name() if device.type == "cuda" else "none",
        parameters=sum(p.numel() for p in model.parameters()))

    def loss_of(tokens, targets):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(tokens)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

    def step(tokens, targets):
        loss = loss_of(tokens, targets)
        loss.backward()
        return loss.detach()

    if "explain" in parts:
        start = time.perf_counter()
        explanation = torch._dynamo.explain(loss_of)(tokens, targets)
        reasons = collections.Counter(r.reason.strip().splitlines()[0][:200] for r in explanation.break_reasons)
        log(label, "explain forward+loss", graphs=explanation.graph_count, graph_breaks=explanation.graph_break_count,
            reasons=dict(reasons.most_common()), seconds=round(time.perf_counter() - start, 1))
        torch._dynamo.reset()
        model.zero_grad(set_to_none=True)

    if "eager" in parts:
        eager_ms = do_bench(lambda: step(tokens, targets), return_mode="median")
        log(label, "eager step", ms=round(eager_ms, 3))

    def fp32_step_grads():
        """Every parameter's gradient of the step without autocast: the measure of the bf16 steps' error."""
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(tokens).float().flatten(0, 1), targets.flatten()).backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        return grads

    def error_summary(grads, want):
        errors = {name: relative_error(grads[name], want[name]) for name in want}
        worst = max(errors, key=errors.get)
        return dict(median=sorted(errors.values())[len(errors) // 2], worst=errors[worst], worst_at=worst)

    fp32_grads = fp32_step_grads() if {"compiled", "compiled_emulated"} & set(parts) else None
    for part in ("compiled", "compiled_emulated"):
        if part not in parts:
            continue
        try:
            emulate = part == "compiled_emulated"
            torch._inductor.config.emulate_precision_casts = emulate
            whole_step = hasattr(torch._dynamo.config, "trace_autograd_ops")
            if whole_step:  # loss.backward() traced into the one graph
                torch._dynamo.config.trace_autograd_ops = True
                compiled = torch.compile(step, fullgraph=True)
            else:  # an older torch: the forward and loss as one graph, the backward through AOTAutograd
                compiled_loss = torch.compile(loss_of, fullgraph=True)

                def compiled(tokens, targets):
                    loss = compiled_loss(tokens, targets)
                    loss.backward()
                    return loss.detach()
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            compiled_loss = compiled(tokens, targets)
            torch.cuda.synchronize(device)
            first_call = time.perf_counter() - start
            compiled_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
            model.zero_grad(set_to_none=True)
            eager_loss = step(tokens, targets)
            eager_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
            against_eager = error_summary(compiled_grads, eager_grads)
            compiled_ms = do_bench(lambda: compiled(tokens, targets), return_mode="median")
            log(label, f"{part} step (fullgraph=True, inductor)", whole_step=whole_step, ms=round(compiled_ms, 3),
                first_call_s=round(first_call, 1), loss=compiled_loss.item(), eager_loss=eager_loss.item(),
                worst_grad_relative_error=against_eager["worst"], worst_grad=against_eager["worst_at"],
                median_grad_relative_error=against_eager["median"],
                compiled_against_fp32=error_summary(compiled_grads, fp32_grads),
                eager_against_fp32=error_summary(eager_grads, fp32_grads))
        except Exception:
            log(label, f"{part} step failed", error=traceback.format_exc()[-3000:])
        finally:
            torch._inductor.config.emulate_precision_casts = False
            if hasattr(torch._dynamo.config, "trace_autograd_ops"):
                torch._dynamo.config.trace_autograd_ops = False
            torch._dynamo.reset()

    if "export" in parts:
        try:
            forward = AutocastForward(model).eval()
            start = time.perf_counter()
            with torch.no_grad():
                want = forward(tokens[:2])
                program = torch.export.export(forward, (tokens[:2],))
                got = program.module()(tokens[:2])
            targets_in_graph = collections.Counter(  # autocast regions are nested graph modules
                str(node.target) for module in program.graph_module.modules() if isinstance(module, torch.fx.GraphModule)
                for node in module.graph.nodes if node.op == "call_function" and "composer" in str(node.target))
            log(label, "export no-grad forward", ok=True, seconds=round(time.perf_counter() - start, 1),
                logits_relative_error=relative_error(got, want), composer_ops=dict(targets_in_graph))
        except Exception:
            log(label, "export no-grad forward", ok=False, error=traceback.format_exc()[-3000:])


if __name__ == "__main__":
    sys.exit(main())
