"""`mixc`: check, plan, show and train spec files.

Exit codes: 0 success; 2 bad input (an invalid spec, pointed at its line; a study or cache that
cannot be used as asked); 130 interrupted; 1 an internal error, printed as one line with the path
of a log that holds its traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from composer.grammar.errors import SpecError

# soft_wrap: never re-wrap lines (an error's underline must stay under its line).
# A pipe has no width: give tables room rather than rich's 80 columns.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 150)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def _load(args):
    from composer.loader import load
    return load(args.spec, model=args.model)


def cmd_check(args) -> int:
    spec = _load(args)
    from composer.loader import locate
    from composer.planner import default_target, reference_warnings
    from composer.resolve import resolve
    from composer.schedule import layer_names
    names = layer_names(spec)
    target = default_target(args.precision)
    warnings = reference_warnings(resolve(spec), target)
    if warnings:
        report = locate(args.spec, warnings, args.model, "error" if args.strict else "warning")
        errors.print(report.render() + "\n", markup=False)
        if args.strict:
            return 2
    console.print(f"{args.spec}: model `{spec.name}` is valid: {len(names)} layers, blocks "
                  f"{', '.join(sorted(set(names)))}")
    if args.holes:
        from composer.holes import hole_paths
        console.print("search may vary:\n  " + "\n  ".join(hole_paths(spec)))
    return 0


def cmd_plan(args) -> int:
    from composer.planner import default_target, plan
    from composer.report import kernels_text, layer_table, plan_dot, plan_json, totals_text
    the_plan = plan(_load(args), default_target(args.precision, "inference" if args.inference else "train"))
    console.print(layer_table(the_plan))
    console.print(totals_text(the_plan))
    console.print(kernels_text(the_plan))
    if args.json:
        Path(args.json).write_text(plan_json(the_plan))
        console.print(f"wrote {args.json}")
    if args.dot or args.svg:
        dot = plan_dot(the_plan)
        if args.dot:
            Path(args.dot).write_text(dot)
            console.print(f"wrote {args.dot}")
        if args.svg:
            if shutil.which("dot") is None:
                errors.print("--svg needs Graphviz's `dot` program (apt-get install graphviz); use --dot instead")
                return 1
            subprocess.run(["dot", "-Tsvg", "-o", args.svg], input=dot.encode(), check=True)
            console.print(f"wrote {args.svg}")
    return 0


def cmd_extrapolate(args) -> int:
    from composer.grammar.writer import to_mix
    from composer.planner import default_target, plan
    from composer.report import totals_text
    from composer.schedule import layer_names
    from composer.search.extrapolate import extrapolate
    from composer.search.trial import schedule_text
    spec = _load(args)
    if args.depth < 1:
        errors.print(f"--depth must be at least 1, got {args.depth}")
        return EXIT_BAD_INPUT
    larger = extrapolate(spec, args.depth, args.mode, args.d_model)
    out = Path(args.out) if args.out else Path(args.spec).resolve().with_name(f"{larger.name}.mix")
    header = (f"{args.mode} of {Path(args.spec).name} ({schedule_text(layer_names(spec))}) to {args.depth} layers"
              + (f", d_model {args.d_model}" if args.d_model else ""))
    out.write_text(to_mix(larger, header=header))
    console.print(f"{larger.name}: {schedule_text(layer_names(larger))}")
    console.print(totals_text(plan(larger, default_target())))
    console.print(f"wrote {out}")
    return 0


def cmd_source(args) -> int:
    from composer.build import model_source
    source = model_source(_load(args), origin=str(args.spec))
    if args.output:
        Path(args.output).write_text(source)
        console.print(f"wrote {args.output}")
    else:
        sys.stdout.write(source)
    return 0


def cmd_kernels(args) -> int:
    from composer.codegen.kernel_plan import kernel_plan
    from composer.planner import default_target
    from composer.report import target_text
    from composer.resolve import resolve
    spec = resolve(_load(args))
    target = default_target(args.precision, "inference" if args.inference else "train")
    specialisations, off_kernels = kernel_plan(spec, target)
    console.print(target_text(target))
    width = max((len(item.template) for item in specialisations), default=0)
    for item in specialisations:
        constants = " ".join(f"{k}={v}" for k, v in item.constants)
        console.print(f"{item.template:{width}s} {constants}\n{'':{width}s} blocks: {', '.join(item.blocks)}")
        if item.runs:
            console.print(f"{'':{width}s} runs: {item.runs}")
    for block, why in off_kernels.items():
        console.print(f"block {block}: {why}")
    if args.emit:
        out = Path(args.emit)
        out.mkdir(parents=True, exist_ok=True)
        for item in specialisations:
            (out / item.file_name).write_text(item.source(spec.name))
        console.print(f"wrote {len(specialisations)} kernel modules to {out}")
    return 0


def cmd_tune(args) -> int:
    from composer.resolve import resolve
    from composer.tune import TuneError, tune
    spec = resolve(_load(args))
    try:
        tune(spec, args.precision, args.batch_size, args.seq_len, Path(args.out) if args.out else None,
             args.candidates, say=lambda line: console.print(line, markup=False))
    except TuneError as exc:
        errors.print(f"error: {exc}", markup=False)
        return 1
    return 0


def cmd_schema(args) -> int:
    from composer.spec import Spec
    sys.stdout.write(json.dumps(Spec.model_json_schema(), indent=2) + "\n")
    return 0


def cmd_train(args) -> int:
    from composer.search.threads import use_cpu_threads
    from composer.search.train import train_mqar
    spec = _load(args)
    use_cpu_threads(args.threads)
    weights_out = None
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        weights_out = Path(args.out) / "model.safetensors"
    result = train_mqar(spec, steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                        pairs=args.pairs, lr=args.lr, seed=args.seed, console=console, noise=args.noise,
                        precision=args.precision, weights_out=weights_out)
    console.print(f"final loss {result.loss:.4f}, held-out recall accuracy {result.accuracy:.3f} "
                  f"({result.tokens_per_second:,.0f} tokens/s)")
    # What the accuracy means: a uniform guess over the value tokens, and a guess among the context's values.
    console.print(f"chance {1 / (spec.vocab - spec.vocab // 2):.3f}; picking one of the {args.pairs} values "
                  f"in context without matching its key {1 / args.pairs:.3f}")
    return 0


def cmd_export(args) -> int:
    from composer.codegen.package import ExportError
    from composer.export import export
    from composer.layers.weights import WeightsError
    try:
        done = export(args.spec, args.out, weights=args.weights, dtype=args.dtype, force=args.force,
                      head=args.head, model=args.model)
    except (ExportError, WeightsError) as exc:
        errors.print(f"error: {exc}", markup=False)
        return 2
    console.print(f"exported `{done.package}` to {done.folder}: {done.kernels} kernels, weights from {done.weights}")
    console.print(f"load it: import {done.package}; {done.package}.from_pretrained({str(done.folder)!r}), or "
                  f"transformers' {done.auto_class}.from_pretrained({str(done.folder)!r}, trust_remote_code=True)")
    return 0


def _workers(text: str) -> int | str:
    """--workers: a count of at least 1, or auto."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or auto, got {text!r}") from None


def cmd_search(args) -> int:
    from composer.search.run import SearchOptions, run_search
    from composer.search.study import StudyError
    options = SearchOptions(Path(args.spec), model=args.model, trials=args.trials, workers=args.workers,
                            storage=args.storage, study_name=args.study, out=Path(args.out) if args.out else None,
                            resume=args.resume, device=args.device, heartbeat_s=args.heartbeat,
                            save_weights=args.save_weights, time_limit_s=args.time_limit,
                            report_only=args.report_only)
    try:
        return run_search(options, console)
    except StudyError as exc:
        errors.print(f"error: {exc}", markup=False)
        return EXIT_BAD_INPUT


def cmd_generate(args) -> int:
    import torch

    from composer.decoding import DecodeError, decoding_model, parse_ids
    spec = _load(args)
    try:
        ids = parse_ids(args.prompt_ids)
        model = decoding_model(spec, args.weights, args.device, args.precision)
    except DecodeError as exc:
        errors.print(f"error: {exc}", markup=False)
        return 1
    if max(ids) >= model.vocab_size or min(ids) < 0:
        errors.print(f"error: token ids must be in 0 .. {model.vocab_size - 1}", markup=False)
        return 1
    if args.weights is None:
        errors.print("note: no --weights: the model is freshly initialised, so the tokens are noise", markup=False)
    device = model.embedding.weight.device
    generator = torch.Generator(device=device).manual_seed(args.seed)
    out = model.generate(torch.tensor([ids], device=device), max_new_tokens=args.max_new_tokens,
                         do_sample=args.temperature > 0, temperature=args.temperature or 1.0, top_k=args.top_k,
                         top_p=args.top_p, eos_token_id=args.eos_token_id, generator=generator)
    console.print(",".join(str(t) for t in out[0, len(ids):].tolist()))
    return 0


def cmd_bench_decode(args) -> int:
    from composer.decoding import DecodeError, decoding_model, time_decode
    from composer.report import human_bytes
    spec = _load(args)
    try:
        model = decoding_model(spec, args.weights, args.device, args.precision)
    except DecodeError as exc:
        errors.print(f"error: {exc}", markup=False)
        return 1
    device = model.embedding.weight.device
    console.print(f"model `{spec.name}` on {device} ({args.precision}; "
                  f"{'the plan' + chr(39) + 's kernels' if device.type == 'cuda' else 'the plain-PyTorch reference'})")
    for batch in args.batch_size:
        t = time_decode(model, batch, args.prompt_len, args.new_tokens, args.repeats,
                        cuda_graph=False if args.no_cuda_graph else None)
        console.print(f"batch {batch:4d}  prefill {t.prompt_len} tokens {t.prefill_ms:9.2f} ms  "
                      f"decode {t.decode_ms_per_step:8.3f} ms/step{' (CUDA graph)' if t.cuda_graph else ''} = "
                      f"{t.tokens_per_second:10,.1f} tokens/s  "
                      f"cache {human_bytes(t.cache_bytes)}  peak memory {human_bytes(t.peak_memory_bytes)}")
    return 0


def add_decode_commands(command) -> None:
    """`mixc generate` and `mixc bench-decode`."""
    gen = command("generate", "continue a prompt of token ids with the spec's model (greedy, or sampled with "
                  "--temperature)", cmd_generate)
    gen.add_argument("--prompt-ids", required=True, help="comma-separated token ids, e.g. 1,2,3")
    gen.add_argument("--max-new-tokens", type=int, default=20)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; above 0: sample")
    gen.add_argument("--top-k", type=int)
    gen.add_argument("--top-p", type=float)
    gen.add_argument("--eos-token-id", type=int)
    gen.add_argument("--seed", type=int, default=0)
    bench = command("bench-decode", "time prefill and decoding with the cache: ms a step, tokens/s, cache and "
                    "peak memory", cmd_bench_decode)
    bench.add_argument("--batch-size", type=int, nargs="+", default=[1])
    bench.add_argument("--prompt-len", type=int, default=128)
    bench.add_argument("--new-tokens", type=int, default=32)
    bench.add_argument("--repeats", type=int, default=3, help="the median of this many runs")
    bench.add_argument("--no-cuda-graph", action="store_true", help="run the decoding steps eagerly on CUDA too")
    for p in (gen, bench):
        p.add_argument("--weights", help="a safetensors file of the spec's weights (default: freshly initialised)")
        p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
        p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="the weights' and cache's dtype")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mixc", description="Compile sequence-model architecture specs.")
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, func):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("spec", help="a .mix, .json or .yaml spec file")
        p.add_argument("--model", help="which model, when the file defines several")
        p.set_defaults(func=func)
        return p

    check = command("check", "check a spec; exit 2 with located errors when it is invalid", cmd_check)
    check.add_argument("--holes", action="store_true", help="list what a search section may vary")
    check.add_argument("--strict", action="store_true", help="a layer that will run the plain-PyTorch reference "
                       "on a GPU (sizes the generated kernels do not take) is an error, not a warning")
    check.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help=argparse.SUPPRESS)
    plan = command("plan", "print the per-layer plan: parameters, FLOPs, state, and what runs for each layer",
                   cmd_plan)
    plan.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                      help="the activations' dtype the kernels are planned for")
    plan.add_argument("--inference", action="store_true", help="plan a run without gradients")
    plan.add_argument("--json", metavar="FILE", help="write the plan and op graph as JSON")
    plan.add_argument("--dot", metavar="FILE", help="write the op graph as Graphviz DOT")
    plan.add_argument("--svg", metavar="FILE", help="render the op graph as SVG (needs Graphviz)")
    source = command("source", "print the generated PyTorch module source", cmd_source)
    source.add_argument("-o", "--output", help="write it to a file instead")
    train = command("train", "train the spec's model on multi-query associative recall (MQAR), CPU or GPU",
                    cmd_train)
    train.add_argument("--steps", type=int, default=600)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--seq-len", type=int, default=32)
    train.add_argument("--pairs", type=int, default=4)
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                       help="bf16: forward passes under bf16 autocast (fp32 weights); the SSD kernels then "
                            "multiply bf16 operands")
    train.add_argument("--threads", type=int, default=0, metavar="N",
                       help="torch CPU threads (default: the cores the load average leaves idle, at least 1)")
    train.add_argument("--out", metavar="DIR", help="write the trained weights to DIR/model.safetensors")
    train.add_argument("--noise", action="store_true",
                       help="random tokens between queries (Zoology's random_non_queries) instead of token 0")
    search = command("search", "search the spec's open choices with Optuna: trials, live progress, a Pareto "
                     "report and the best specs as .mix files", cmd_search)
    search.add_argument("--trials", type=int, help="trials the study should have in all (default: the spec's "
                        "`trials` setting, else 32); with --resume, more are queued up to this count")
    search.add_argument("--workers", type=_workers, default=1, help="worker processes on this machine (default 1), "
                        "or auto: as many as the planned memory of a trial and the cores allow (at most 4 a GPU)")
    search.add_argument("--time-limit", type=float, metavar="SECONDS", help="start no trial after this many "
                        "seconds; the running ones finish, the rest stay queued for --resume, and the report is written")
    search.add_argument("--storage", metavar="URL", help="where the study lives: a SQLite file path, an Optuna "
                        "RDB URL (postgresql://...) or journal:PATH; default OUT/study.db")
    search.add_argument("--study", metavar="NAME", help="the study's name in the storage (default: the model's)")
    search.add_argument("--out", metavar="DIR", help="report.html, best/*.mix and the default storage "
                        "(default: MODEL.search/ beside the spec)")
    search.add_argument("--resume", action="store_true", help="continue the stored study, or join it as one "
                        "more worker from another process or machine")
    search.add_argument("--report-only", action="store_true", help="train nothing: write the report (tables, "
                        "report.html, best specs, recall figures) from the stored study as it stands")
    search.add_argument("--save-weights", action="store_true", help="keep each trial's trained weights "
                        "(OUT/weights) and write the Pareto-optimal ones beside their best specs")
    search.add_argument("--device", help="torch device for training (default: cuda when present, else cpu)")
    search.add_argument("--heartbeat", type=float, default=10.0, metavar="SECONDS", help="how often a running "
                        "trial signals it is alive; one silent for 3 beats is put back in the queue")
    extra = command("extrapolate", "carry a (found) spec's layer pattern to a deeper model: `stack` repeats it, "
                    "`stretch` widens each layer into a run; writes the spec and prints its plan's totals",
                    cmd_extrapolate)
    extra.add_argument("--mode", choices=("stack", "stretch"), default="stack", help="how (default stack)")
    extra.add_argument("--depth", type=int, required=True, help="the target's layer count")
    extra.add_argument("--d-model", type=int, help="the target's width (default: the spec's)")
    extra.add_argument("-o", "--out", metavar="FILE", help="the spec to write (default: NAME_MODEDEPTH.mix beside "
                       "the spec)")
    kernels = command("kernels", "list the generated kernel specialisations the spec needs", cmd_kernels)
    kernels.add_argument("--emit", metavar="DIR", help="write their rendered source there, for reading")
    kernels.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                         help="the training precision the kernels are specialised for (as `mixc train`)")
    kernels.add_argument("--inference", action="store_true",
                         help="the kernels a run without gradients renders instead (under torch.no_grad): forwards "
                              "that save nothing for a backward, no backward")
    tune_ = command("tune", "measure the spec's SSD kernels on this GPU and keep the fastest right tuning of each "
                    "scan in your tunings file, which the plan reads first", cmd_tune)
    tune_.add_argument("--precision", choices=("fp32", "bf16"), default="bf16", help="the inputs' dtype (default bf16)")
    tune_.add_argument("--batch-size", type=int, default=8, help="sequences a step (default 8)")
    tune_.add_argument("--seq-len", type=int, help="tokens a sequence (default: the spec's max_len, at most 8192)")
    tune_.add_argument("--candidates", type=int, help="measure only the first N candidates (the plan's tuning first)")
    tune_.add_argument("-o", "--out", help="the tunings file to write (default: $COMPOSER_TUNINGS, else "
                       "~/.cache/composer/tunings.json)")
    export_ = command("export", "write the spec's model as a standalone package and Hugging Face repository: "
                      "its source, rendered kernels, config and weights", cmd_export)
    export_.add_argument("-o", "--out", required=True, metavar="DIR", help="the package folder (its name is the "
                         "package's, so a Python identifier)")
    export_.add_argument("--weights", metavar="FILE", help="a safetensors file of this spec's model (mixc train "
                         "--out writes one); default: a fresh initialisation")
    export_.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="the weights' dtype")
    export_.add_argument("--head", choices=("lm", "masked-lm"), help="lm (causal models' default) or masked-lm "
                         "(encoders' default)")
    export_.add_argument("--force", action="store_true", help="replace what is in a non-empty DIR")
    add_decode_commands(command)
    schema = sub.add_parser("schema", help="print the spec's JSON Schema")
    schema.set_defaults(func=cmd_schema)
    return top


EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def _log_internal_error() -> Path | None:
    """The traceback of an internal error, in a private log file; None when none can be written."""
    import os
    import tempfile
    import traceback
    from datetime import datetime, timezone
    from composer.codegen.cache import cache_root
    text = f"mixc {' '.join(sys.argv[1:])}\n{datetime.now(timezone.utc).isoformat()}\n\n{traceback.format_exc()}"
    for folder in (cache_root() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor, name = tempfile.mkstemp(prefix="mixc-", suffix=".log", dir=folder)
            with os.fdopen(descriptor, "w") as log:
                log.write(text)
            return Path(name)
        except OSError:
            continue
    return None


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        return args.func(args)
    except SpecError as exc:
        errors.print(exc.render(), markup=False)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        errors.print("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 (the last line of defence: a short message, the details logged)
        from composer.codegen.cache import CacheError
        if isinstance(exc, CacheError):
            errors.print(f"error: {exc}", markup=False)
            return EXIT_BAD_INPUT
        log = _log_internal_error()
        summary = (str(exc).strip().splitlines() or [""])[0][:200]
        errors.print(f"error: internal error ({type(exc).__name__}: {summary})"
                     + (f"; the traceback is in {log}" if log else ""), markup=False)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
