"""`mixc generate` and `mixc bench-decode` on the CPU reference path."""

import json

import torch

import composer
from composer.cli import main
from composer.layers.weights import save
from composer.report import human_bytes

from .test_decode_matches_forward import EXAMPLES

TINY = str(EXAMPLES / "tiny_mqar.mix")


def test_generate_with_weights_prints_what_generate_gives(tmp_path, capsys):
    torch.manual_seed(3)
    model = composer.build(composer.load(TINY), backend="reference").eval()
    save(model, tmp_path / "w.safetensors")
    expected = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=6)[0, 3:].tolist()
    assert main(["generate", TINY, "--weights", str(tmp_path / "w.safetensors"), "--prompt-ids", "1,2,3",
                 "--max-new-tokens", "6", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == ",".join(map(str, expected))


def test_generate_on_an_encoder_is_a_clear_error(capsys):
    assert main(["generate", str(EXAMPLES / "hydra_encoder.mix"), "--prompt-ids", "1,2", "--device", "cpu"]) == 1
    assert "cannot generate: layer 0 (block `hydra`)" in capsys.readouterr().err


def test_generate_rejects_bad_ids_and_weights(tmp_path, capsys):
    assert main(["generate", TINY, "--prompt-ids", "1,x", "--device", "cpu"]) == 1
    assert "comma-separated token ids" in capsys.readouterr().err
    (tmp_path / "bad.safetensors").write_bytes(b"not a weights file")
    assert main(["generate", TINY, "--prompt-ids", "1", "--weights", str(tmp_path / "bad.safetensors"),
                 "--device", "cpu"]) == 1
    assert "error:" in capsys.readouterr().err


def test_bench_decode_reports_tokens_per_second_and_memory(capsys):
    assert main(["bench-decode", TINY, "--batch-size", "1", "4", "--prompt-len", "16", "--new-tokens", "4",
                 "--repeats", "1", "--device", "cpu"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("batch")]
    assert len(lines) == 2 and all("tokens/s" in line and "peak memory" in line for line in lines)
    assert not any("CUDA graph" in line for line in lines)  # on a CPU the steps run eagerly


def test_bench_decode_can_run_the_steps_without_a_cuda_graph(capsys):
    assert main(["bench-decode", TINY, "--prompt-len", "8", "--new-tokens", "2", "--repeats", "1", "--device", "cpu",
                 "--no-cuda-graph"]) == 0
    assert "tokens/s" in capsys.readouterr().out


def test_plan_reports_the_decode_cache(capsys):
    assert main(["plan", TINY]) == 0
    expected = human_bytes(composer.plan(composer.load(TINY)).cache_bytes(1, 128))
    assert f"decode cache          {expected} a sequence at 128 tokens" in capsys.readouterr().out


def test_plan_json_gives_the_cache_bytes(tmp_path):
    assert main(["plan", TINY, "--json", str(tmp_path / "plan.json")]) == 0
    totals = json.loads((tmp_path / "plan.json").read_text())["totals"]
    assert totals["decode_cache_bytes_at_max_len"] == composer.plan(composer.load(TINY)).cache_bytes(1, 128)
