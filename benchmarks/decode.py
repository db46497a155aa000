"""Decoding on the GPU: Mamba-2 130M's decode step against mamba_ssm's, a shortened hybrid_1b against the same shape
in transformers, and the checks that make the numbers mean something.

    python benchmarks/decode.py [--out FILE] [--sections checks,mamba,hybrid]

checks  the CUDA graph's replayed logits against eager decoding (DecodeGraph), the fused decoding step against the
        unfused layers, and bf16 prefill + decode against the fp32 forward (4-layer Mamba-2 130M; 8-layer hybrid_1b)
mamba   Mamba-2 130M bf16, batch 1 and 64: one decoding step (embedding, 24 layers, norm, tied head) of ours,
        captured in a CUDA graph, against mamba_ssm's: its Mamba2 module's `step` for 24 layers with its fused
        add + RMSNorm between them (what MambaLMHeadModel runs), captured the same way, as its generate(cg=True)
        does. The peer runs with our weights and its logits are checked against ours. Without causal_conv1d (not
        among the peer files) mamba_ssm's step takes its plain-PyTorch conv update. Ours is timed with the
        state in fp32 (the default) and in bf16 (mamba_ssm's default), and eagerly for the host's share.
hybrid  hybrid_1b's shape with 8 layers (7 Mamba-2, 1 attention, SwiGLU MLPs), bf16, batch 1: our generate()
        against transformers' Bamba of the same sizes through its generate() (static cache when it takes one).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import traceback
from pathlib import Path

import torch
import triton.testing
from torch import nn

import composer
from composer.decoding import time_decode
from composer.layers.decode_graph import DecodeGraph

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def say(out, line: str) -> None:
    print(line, flush=True)
    out.write(line + "\n")
    out.flush()


def example(name: str, layers: int | None = None):
    text = (ROOT / "examples" / f"{name}.mix").read_text()
    return composer.loads(text if layers is None else re.sub(r"\* 24", f"* {layers}", text))


def set_backend(model, backend: str) -> None:
    for layer in model.modules():
        if hasattr(layer, "backend"):
            layer.backend = backend


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@torch.no_grad()
def checks(out) -> None:
    torch.manual_seed(0)
    models = (("4-layer Mamba-2 130M", example("mamba2_130m", 4)), ("8-layer hybrid_1b", example("hybrid_1b", 8)))
    for name, spec in models:
        reference = composer.build(spec, backend="reference").cuda().float().eval()
        fast = composer.build(spec, backend="auto").cuda().eval()
        fast.load_state_dict(reference.state_dict())
        fast = fast.to(torch.bfloat16)
        vocab = fast.vocab_size
        for batch, prompt_len, new in ((1, 300, 16), (4, 1000, 8))[:1 if "hybrid" in name else 2]:
            tokens = torch.randint(0, vocab, (batch, prompt_len + new), device="cuda")
            full = reference(tokens).float()
            cache, twin = fast.allocate_cache(batch, prompt_len + new), fast.allocate_cache(batch, prompt_len + new)
            half = prompt_len // 2
            pre = torch.cat([fast(tokens[:, :half], cache=cache), fast(tokens[:, half:prompt_len], cache=cache)], 1)
            fast(tokens[:, :half], cache=twin)
            fast(tokens[:, half:prompt_len], cache=twin)
            runner = DecodeGraph(fast, cache)
            graph_steps, eager_steps, unfused_steps = [], [], []
            for t in range(prompt_len, prompt_len + new):
                graph_steps.append(runner(tokens[:, t:t + 1]).clone())
            set_backend(fast, "reference")  # the same bf16 weights through the unfused plain-PyTorch layers
            unfused = fast.allocate_cache(batch, prompt_len + new)
            fast(tokens[:, :prompt_len], cache=unfused)
            for t in range(prompt_len, prompt_len + new):
                unfused_steps.append(fast(tokens[:, t:t + 1], cache=unfused))
            set_backend(fast, "auto")
            for t in range(prompt_len, prompt_len + new):
                eager_steps.append(fast.decode_step(tokens[:, t:t + 1], twin))
            graph, eager, unfused = (torch.cat(s, 1) for s in (graph_steps, eager_steps, unfused_steps))
            scale = full.abs().max().item()
            say(out, f"{name} b={batch} prompt={prompt_len} new={new}: graph vs eager max|diff| "
                     f"{(graph.float() - eager.float()).abs().max().item():.2e} (equal: {torch.equal(graph, eager)}); "
                     f"bf16 vs fp32 forward max err/max|logit|: prefill "
                     f"{(pre.float() - full[:, :prompt_len]).abs().max().item() / scale:.2e}, decode "
                     f"{(graph.float() - full[:, prompt_len:]).abs().max().item() / scale:.2e}, unfused layers' decode "
                     f"{(unfused.float() - full[:, prompt_len:]).abs().max().item() / scale:.2e} "
                     f"(finite: {bool(torch.isfinite(graph).all())})")


class PeerMambaLM(nn.Module):
    """Mamba-2 130M's decoding step as mamba_ssm's MambaLMHeadModel runs it: embedding, per layer its fused
    residual add + RMSNorm (residual in fp32) then Mamba2.step, the final add + norm, the tied head."""

    def __init__(self, mamba2, layer_norm_fn, layers: int, d_model: int, vocab: int):
        super().__init__()
        self.layer_norm_fn = layer_norm_fn
        self.embedding = nn.Embedding(vocab, d_model)
        self.mixers = nn.ModuleList(mamba2(d_model, d_state=128, d_conv=4, expand=2, headdim=64, ngroups=1,
                                           chunk_size=256, use_mem_eff_path=False) for _ in range(layers))
        self.norms = nn.ParameterList(nn.Parameter(torch.ones(d_model)) for _ in range(layers))
        self.norm_f = nn.Parameter(torch.ones(d_model))
        self.caches = []

    def load_from(self, ours) -> None:
        self.embedding.weight.data.copy_(ours.embedding.weight)
        for mixer, norm, layer in zip(self.mixers, self.norms, ours.layers):
            mixer.load_state_dict(layer.mixer.state_dict())
            norm.data.copy_(layer.mixer_norm.weight)
        self.norm_f.data.copy_(ours.norm.weight)

    def allocate(self, batch: int) -> None:
        self.caches = [mixer.allocate_inference_cache(batch, 1) for mixer in self.mixers]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, residual = self.embedding(tokens), None
        for mixer, norm, (conv_state, ssm_state) in zip(self.mixers, self.norms, self.caches):
            hidden, residual = self.layer_norm_fn(hidden, norm, None, residual=residual, prenorm=True,
                                                  residual_in_fp32=True, eps=1e-5, is_rms_norm=True)
            hidden, _, _ = mixer.step(hidden, conv_state, ssm_state)
        hidden = self.layer_norm_fn(hidden, self.norm_f, None, residual=residual, prenorm=False,
                                    residual_in_fp32=True, eps=1e-5, is_rms_norm=True)
        return hidden @ self.embedding.weight.t()


def capture(step, tokens: torch.Tensor):
    """`step(tokens)` captured in a CUDA graph after two warm-up calls on a side stream: (graph, logits buffer)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step(tokens)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = step(tokens)
    return graph, logits


def logits_of_steps(step, tokens_buffer, steps: list[torch.Tensor]) -> torch.Tensor:
    outputs = []
    for tokens in steps:
        tokens_buffer.copy_(tokens)
        outputs.append(step().clone())
    return torch.cat(outputs, 1)


def kernel_profile(step, repeats: int = 20, rows: int = 12) -> str:
    """The kernels one replayed step runs, by GPU time (torch.profiler over `repeats` replays)."""
    from torch.profiler import ProfilerActivity, profile
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            step()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows)


@torch.no_grad()
def mamba(out) -> None:
    from peers import mamba2_module
    spec = example("mamba2_130m")
    ours = composer.build(spec).cuda().to(torch.bfloat16).eval()
    mamba2, layer_norm_fn = mamba2_module()
    peer = PeerMambaLM(mamba2, layer_norm_fn, 24, 768, ours.embedding.weight.shape[0]).cuda().to(torch.bfloat16)
    peer.load_from(ours)
    peer.eval()
    conv_path = sys.modules["mamba_ssm.modules.mamba2"].causal_conv1d_update
    say(out, f"mamba_ssm Mamba2.step conv update: "
             f"{'causal_conv1d' if conv_path else 'its plain-PyTorch fallback (no causal_conv1d)'}")
    for batch in (1, 64):
        steps = [torch.randint(0, ours.vocab_size, (batch, 1), device="cuda") for _ in range(8)]
        torch.cuda.reset_peak_memory_stats()
        peer.allocate(batch)
        tokens = torch.zeros(batch, 1, dtype=torch.long, device="cuda")
        peer_graph, peer_logits = capture(peer.step, tokens)
        peer_peak = torch.cuda.max_memory_allocated()
        for state in peer.caches:
            for t in state:
                t.zero_()
        peer_out = logits_of_steps(lambda: (peer_graph.replay(), peer_logits)[1], tokens, steps)
        t_peer = triton.testing.do_bench(peer_graph.replay, warmup=50, rep=300)
        peer_cache_bytes = sum(t.numel() * t.element_size() for state in peer.caches for t in state)
        peer_graph = None  # frees the graph (a del would leave the lambdas above naming nothing)
        results, logits = {}, {}
        for form, state_dtype in (("fp32 state", torch.float32), ("bf16 state", torch.bfloat16)):
            torch.cuda.reset_peak_memory_stats()
            cache = ours.allocate_cache(batch, 4096, state_dtype=state_dtype)
            runner = DecodeGraph(ours, cache)
            peak = torch.cuda.max_memory_allocated()
            logits[form] = logits_of_steps(lambda: runner(runner.tokens), runner.tokens, steps)
            results[form] = (triton.testing.do_bench(runner.graph.replay, warmup=50, rep=300), cache.nbytes(), peak)
            if form == "fp32 state":
                say(out, kernel_profile(runner.graph.replay))
            runner = cache = None
        eager = DecodeGraph(ours, ours.allocate_cache(batch, 4096), graph=False)
        t_eager = triton.testing.do_bench(lambda: eager(steps[0]), warmup=5, rep=300)
        t_ours = results["fp32 state"][0]
        say(out, f"Mamba-2 130M bf16 decode step b={batch}, CUDA graphs: mamba_ssm Mamba2.step x 24 (bf16 state) "
                 f"{t_peer * 1e3:.1f} us = {batch / t_peer * 1e3:,.0f} tokens/s; ours, fp32 state: "
                 f"{t_ours * 1e3:.1f} us = {batch / t_ours * 1e3:,.0f} tokens/s = {t_peer / t_ours:.2f}x")
        for form, (t, cache_bytes, peak) in results.items():
            say(out, f"    ours {form}: {t * 1e3:.1f} us = {t_peer / t:.2f}x mamba_ssm; cache "
                     f"{cache_bytes / 2**20:.2f} MiB, peak while capturing {peak / 2**20:.0f} MiB; logits over 8 "
                     f"steps vs fp32 state "
                     f"{relative(logits[form], logits['fp32 state']):.2e}, vs mamba_ssm "
                     f"{relative(peer_out, logits[form]):.2e} (max err/max|logit|)")
        say(out, f"    ours eager (no graph): {t_eager * 1e3:.1f} us; mamba_ssm cache "
                 f"{peer_cache_bytes / 2**20:.2f} MiB, peak while capturing {peer_peak / 2**20:.0f} MiB")
        t = time_decode(ours, batch, prompt_len=128, new_tokens=64, repeats=3)
        say(out, f"    time_decode b={batch} (greedy loop around the graph): prefill 128 tokens {t.prefill_ms:.2f} ms, "
                 f"{t.decode_ms_per_step:.3f} ms/step, {t.tokens_per_second:,.0f} tokens/s, cache "
                 f"{t.cache_bytes / 2**20:.2f} MiB, peak {t.peak_memory_bytes / 2**20:.0f} MiB")
        eager = None
        torch.cuda.empty_cache()


def hf_bamba(ours, spec_layers: list[str], hidden: int, device: str = "cuda"):
    """transformers' Bamba with our hybrid's sizes (freshly initialised), bf16 on the GPU."""
    from transformers import BambaConfig, BambaForCausalLM
    first = next(layer.mixer for layer in ours.layers if hasattr(layer.mixer, "d_inner"))
    attention = next(layer.mixer for layer in ours.layers if hasattr(layer.mixer, "q_proj"))
    config = BambaConfig(vocab_size=ours.embedding.weight.shape[0], hidden_size=ours.embedding.weight.shape[1],
                         intermediate_size=hidden, num_hidden_layers=len(spec_layers),
                         attn_layer_indices=[i for i, kind in enumerate(spec_layers) if kind == "attn"],
                         num_attention_heads=attention.heads, num_key_value_heads=attention.kv_heads,
                         mamba_n_heads=first.heads, mamba_d_head=first.head_dim, mamba_d_state=first.state,
                         mamba_n_groups=first.groups, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=256,
                         tie_word_embeddings=ours.head is None, max_position_embeddings=4096)
    with torch.device(device):
        model = BambaForCausalLM(config)
    return model.to(dtype=torch.bfloat16).eval(), config


def timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.no_grad()
def hybrid(out) -> None:
    spec = example("hybrid_1b", 8)  # ratio(1 : 7) over 8 layers
    ours = composer.build(spec).cuda().to(torch.bfloat16).eval()
    kinds = ["attn" if hasattr(layer.mixer, "q_proj") else "ssm" for layer in ours.layers]
    say(out, f"hybrid_1b shortened: {len(kinds)} layers {''.join('A' if k == 'attn' else 'S' for k in kinds)}, "
             f"{sum(p.numel() for p in ours.parameters()) / 1e6:.0f}M parameters")
    prompt_len, new = 128, 128
    prompt = torch.randint(0, ours.vocab_size, (1, prompt_len), device="cuda")
    cache = ours.allocate_cache(1, prompt_len + new)
    ours.generate(prompt, max_new_tokens=new, cache=cache)  # captures the graph, compiles the kernels
    t_ours = (timed(lambda: ours.generate(prompt, max_new_tokens=new, cache=cache))
              - timed(lambda: ours.generate(prompt, max_new_tokens=1, cache=cache))) / (new - 1)
    say(out, f"    ours generate() b=1 prompt {prompt_len}: {t_ours * 1e3:.3f} ms/token = {1 / t_ours:,.0f} tokens/s "
             f"(CUDA graph: {cache.decode_graph.captured})")
    import transformers
    model, _ = hf_bamba(ours, kinds, hidden=5632)
    ran = None
    for implementation in ("static", None):
        try:
            kwargs = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False)
            if implementation:
                kwargs["cache_implementation"] = implementation
            model.generate(prompt, **kwargs)
            t_full = timed(lambda: model.generate(prompt, **kwargs))
            t_one = timed(lambda: model.generate(prompt, **{**kwargs, "max_new_tokens": 1, "min_new_tokens": 1}))
            ran = implementation or "its default (HybridMambaAttentionDynamicCache)"
            break
        except Exception as error:  # a class without a static cache says so; the default cache runs next
            say(out, f"    transformers Bamba generate(cache_implementation={implementation!r}) failed: "
                     f"{type(error).__name__}: {str(error)[:300]}")
    if ran is None:
        return
    t_hf = (t_full - t_one) / (new - 1)
    from transformers.models.bamba import modeling_bamba
    say(out, f"    transformers {transformers.__version__} Bamba generate() b=1 prompt {prompt_len}, cache {ran}, "
             f"fast path {getattr(modeling_bamba, 'is_fast_path_available', '?')}: {t_hf * 1e3:.3f} ms/token = "
             f"{1 / t_hf:,.0f} tokens/s; ours {t_hf / t_ours:.1f}x faster")


SECTIONS = {"checks": checks, "mamba": mamba, "hybrid": hybrid}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="decode.log")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    args = parser.parse_args()
    with open(args.out, "w") as out:
        say(out, f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
        for name in args.sections.split(","):
            start = time.perf_counter()
            try:
                SECTIONS[name](out)
            except Exception:  # one failing section leaves the others' numbers
                say(out, f"{name} failed:\n{traceback.format_exc()}")
            say(out, f"[{name}: {time.perf_counter() - start:.0f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
