"""Learning curves of a few fixed hybrids on MQAR, trained side by side on one GPU: what a GPU search's trials
need (steps, learning rate, task size) before a 40-trial run spends its device time.

    . benchmarks/device_setup.sh && python3 benchmarks/search_pilot.py --out DIR [--parallel 8] [--steps 3000]

Each configuration trains in its own process (its own CUDA context, as `mixc search --workers N` runs trials),
`--parallel` at a time, with the search's recipe (search/train.py: AdamW, warmup and cosine, bf16 autocast, the
generated kernels). Every `--eval-every` steps a child prints its held-out accuracy and seconds so far; the parent
writes every line to DIR/search_pilot.jsonl as it comes and prints a table at the end: final accuracy, seconds
a trial, and trials an hour at this parallelism.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# name: (layers, ssd state, peak lr); every model d_model 128, 4 layers, attention 4 heads, SSD head_dim 32
CONFIGS = {
    "attn4": ("attn, attn, attn, attn", 64, 1e-3),
    "attn4_lr3e-3": ("attn, attn, attn, attn", 64, 3e-3),
    "hybrid_1of4_n64": ("ssd, attn, ssd, ssd", 64, 1e-3),
    "hybrid_1of4_n64_lr3e-3": ("ssd, attn, ssd, ssd", 64, 3e-3),
    "hybrid_1of4_n16": ("ssd, attn, ssd, ssd", 16, 1e-3),
    "ssd4_n16": ("ssd, ssd, ssd, ssd", 16, 1e-3),
    "ssd4_n64": ("ssd, ssd, ssd, ssd", 64, 1e-3),
    "ssd4_n128": ("ssd, ssd, ssd, ssd", 128, 1e-3),
}

SPEC = """model pilot_{name} {{
  d_model = 128
  vocab   = {vocab}
  max_len = {seq_len}
  dtype   = fp32
  block attn {{
    mixer   = attention(heads = 4)
    channel = swiglu()
  }}
  block ssd {{
    mixer   = semiseparable(state = {state}, head_dim = 32, chunk = 64)
    channel = swiglu()
  }}
  layers = [{layers}]
}}"""


def child(args) -> int:
    """Train one configuration; print one JSON line per evaluation and one at the end."""
    import composer
    from composer.search.tasks import make_task
    from composer.search.train import TrainSettings, train

    layers, state, lr = CONFIGS[args.config]
    spec = composer.loads(SPEC.format(name=args.config.replace("-", "_").replace(".", "_"), vocab=args.vocab,
                                      seq_len=args.seq_len, state=state, layers=layers))
    task = make_task({"kind": "mqar", "seq_len": args.seq_len, "pairs": args.pairs, "mixed": args.mixed,
                      "noise": args.noise}, spec.vocab, spec.max_len)
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, lr=lr, precision="bf16",
                             eval_every=args.eval_every, eval_batches=4)
    start = time.time()

    def on_eval(step: int, accuracy: float) -> None:
        print(json.dumps({"config": args.config, "step": step, "accuracy": round(accuracy, 4),
                          "seconds": round(time.time() - start, 1)}), flush=True)
    result = train(spec, task, settings, device=args.device, on_eval=on_eval)
    print(json.dumps({"config": args.config, "step": args.steps, "accuracy": round(result.accuracy, 4),
                      "loss": round(result.loss, 4), "seconds": round(time.time() - start, 1),
                      "tokens_per_second": round(result.tokens_per_second), "final": True}), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--parallel", type=int, default=8, help="configurations training at once on the GPU")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--mixed", action=argparse.BooleanOptionalAction, default=False,
                        help="MQAR batches mixing a quarter, half and all of --seq-len (the task's mixed = true)")
    parser.add_argument("--noise", action=argparse.BooleanOptionalAction, default=True,
                        help="random tokens between the pairs and the queries (the task's noise)")
    parser.add_argument("--device", default="cuda", help="cpu: the script's own smoke run")
    parser.add_argument("--limit-s", type=int, default=420, help="a configuration still training then is stopped")
    parser.add_argument("--config", help=argparse.SUPPRESS)  # a child: train this one
    args = parser.parse_args()
    if args.config:
        return child(args)
    sink = Path(args.out, "search_pilot.jsonl").open("a")
    passed = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
              if k in ("steps", "eval_every", "batch_size", "seq_len", "pairs", "vocab", "device")]
    passed += [f"--{'' if getattr(args, flag) else 'no-'}{flag}" for flag in ("mixed", "noise")]

    def run(config: str) -> dict:
        begin, last = time.time(), {"config": config, "accuracy": float("nan")}
        child_run = subprocess.Popen([sys.executable, __file__, "--config", config, *passed],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = child_run.communicate(timeout=args.limit_s)
        except subprocess.TimeoutExpired:
            child_run.kill()
            out, err = child_run.communicate()
            last["stopped"] = f"still training after {args.limit_s} s"
        for line in out.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                sink.write(line + "\n")
                sink.flush()
                print(line, flush=True)
                last.update(row)
        if child_run.returncode not in (0, None) and "stopped" not in last:
            last["error"] = err.strip().splitlines()[-1:] if err.strip() else f"exit {child_run.returncode}"
        last["wall_s"] = round(time.time() - begin, 1)
        return last

    begin = time.time()
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(run, args.configs.split(",")))
    wall = time.time() - begin
    print(f"{'config':26s} {'accuracy':>8s} {'step':>6s} {'wall s':>7s}  note")
    for row in rows:
        print(f"{row['config']:26s} {row['accuracy']:8.3f} {row.get('step', 0):6d} {row['wall_s']:7.1f}  "
              f"{row.get('stopped') or row.get('error') or ''}")
    finished = sum(bool(row.get("final")) for row in rows)
    rate = (f"{finished * 3600 / wall:.0f} trials an hour at {args.steps} steps" if finished == len(rows) else
            f"{finished} finished: no trials-an-hour figure (steps a second each: "
            + ", ".join(f"{row.get('step', 0) / row['wall_s']:.1f}" for row in rows) + ")")
    print(f"{len(rows)} configurations, {args.parallel} at once, in {wall:.0f} s: {rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
