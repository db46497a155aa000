"""`mixc export`: the package loads where the compiler cannot be imported, and runs what `build` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import composer
from composer.codegen.package import ExportError
from composer.layers.weights import WeightsError, load_file, save_file

HERE = Path(__file__).parent
EXAMPLES = HERE.parents[1] / "examples"
SPECS = {"tiny_mqar": EXAMPLES / "tiny_mqar.mix", "every_kind": HERE / "every_kind.mix",
         "tiny_encoder": HERE / "tiny_encoder.mix", "qwen3_next_style": EXAMPLES / "qwen3_next_style.mix"}
# The subprocesses below cannot import the compiler: its name maps to None, so `import composer` fails there.
NO_COMPILER = "import sys; sys.modules['composer'] = None\n"


def run_without_compiler(folder: Path, code: str, env: dict | None = None) -> str:
    script = NO_COMPILER + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": "", **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def exported(tmp_path: Path, name: str, **options) -> tuple[Path, torch.nn.Module]:
    """(the exported folder, `build`'s model with the export's weights)."""
    out = tmp_path / name
    composer.export(SPECS[name], out, **options)
    model = composer.build(composer.load(SPECS[name]))
    composer.load_weights(model, out / "model.safetensors", prefix="model.")
    return out, model.eval()


def save_inputs(folder: Path, model: torch.nn.Module, vocab: int) -> None:
    tokens = torch.randint(0, vocab, (2, 37), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.save({"tokens": tokens, "logits": model(tokens)}, folder / "expected.pt")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_export_loads_without_the_compiler_and_gives_builds_logits_bitwise(tmp_path, name):
    out, model = exported(tmp_path, name)
    save_inputs(tmp_path, model, composer.load(SPECS[name]).vocab)
    printed = run_without_compiler(tmp_path, f"""
        import torch
        import {out.name} as package
        expected = torch.load("expected.pt")
        model = package.from_pretrained("{out.name}").eval()
        with torch.no_grad():
            logits = model(expected["tokens"])
        print(torch.equal(logits, expected["logits"]), torch.isnan(logits).any().item())
    """)
    assert printed.split() == ["True", "False"]
    named = [path for path in out.rglob("*.py") if "composer" in path.read_text()]
    assert named == []


def test_build_runs_the_source_the_export_writes(tmp_path):
    out, _ = exported(tmp_path, "every_kind")
    exported_source = (out / "modeling_every_kind.py").read_text()
    built_source = composer.model_source(composer.load(SPECS["every_kind"]), origin="spec.mix")
    body = built_source[built_source.index("\n\ndef make_"):]
    assert body.strip() in exported_source  # the blocks, schedule and make_model, word for word


def test_transformers_loads_the_export_and_save_pretrained_round_trips(tmp_path):
    pytest.importorskip("transformers")
    out, model = exported(tmp_path, "every_kind")
    save_inputs(tmp_path, model, composer.load(SPECS["every_kind"]).vocab)
    printed = run_without_compiler(tmp_path, f"""
        import torch
        from transformers import AutoModelForCausalLM
        expected = torch.load("expected.pt")
        model = AutoModelForCausalLM.from_pretrained("{out.name}", trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model(expected["tokens"]).logits
        model.save_pretrained("again")
        again = AutoModelForCausalLM.from_pretrained("again", trust_remote_code=True).eval()
        with torch.no_grad():
            logits_again = again(expected["tokens"]).logits
            prompt = expected["tokens"][:1, :5]
            generated = model.generate(prompt, max_new_tokens=4, do_sample=False)
            greedy = prompt
            for _ in range(4):
                greedy = torch.cat([greedy, model(greedy).logits[:, -1:, :50].argmax(-1)], dim=1)  # the real vocab
        print(type(model).__name__, torch.equal(logits, expected["logits"]), torch.equal(logits_again, logits),
              torch.equal(generated, greedy))
    """)
    assert printed.split() == ["EveryKindForCausalLM", "True", "True", "True"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["EveryKindForCausalLM"]
    assert [layer["layer_type"] for layer in config["layers"]] == [
        "linear_attention", "full_attention", "linear_attention", "sliding_attention", None, "linear_attention",
        "linear_attention", "linear_attention"]
    assert "layer_types" not in config  # transformers has no word for a Monarch mixer, so no list at all


def test_a_qwen3_next_style_export_lists_its_layer_types_as_transformers_does(tmp_path):
    out, _ = exported(tmp_path, "qwen3_next_style")
    config = json.loads((out / "config.json").read_text())
    assert config["layer_types"] == ["linear_attention"] * 3 + ["full_attention"] + ["linear_attention"] * 3 + [
        "full_attention"]


def test_encoders_export_with_a_masked_lm_head_and_refuse_a_causal_one(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(ExportError, match="bidirectional"):
        composer.export(SPECS["tiny_encoder"], tmp_path / "causal", head="lm")
    out, model = exported(tmp_path, "tiny_encoder")
    save_inputs(tmp_path, model, composer.load(SPECS["tiny_encoder"]).vocab)
    printed = run_without_compiler(tmp_path, f"""
        import torch
        from transformers import AutoModelForMaskedLM
        expected = torch.load("expected.pt")
        model = AutoModelForMaskedLM.from_pretrained("{out.name}", trust_remote_code=True).eval()
        with torch.no_grad():
            print(type(model).__name__, torch.equal(model(expected["tokens"]).logits, expected["logits"]))
    """)
    assert printed.split() == ["TinyEncoderForMaskedLM", "True"]
    assert "AutoModelForMaskedLM" in json.loads((out / "config.json").read_text())["auto_map"]


def test_the_exported_kernels_run_and_decode_under_the_interpreter(tmp_path):
    out, model = exported(tmp_path, "tiny_mqar")
    save_inputs(tmp_path, model, composer.load(SPECS["tiny_mqar"]).vocab)
    with torch.no_grad():
        prompt = torch.load(tmp_path / "expected.pt")["tokens"][:, :21]
        torch.save(model.generate(prompt, max_new_tokens=3), tmp_path / "generated.pt")
    printed = run_without_compiler(tmp_path, f"""
        import torch
        import {out.name} as package
        expected = torch.load("expected.pt")
        model = package.from_pretrained("{out.name}").eval()
        for module in model.modules():
            if hasattr(module, "backend"):
                module.backend = "triton"  # the rendered kernels, on the CPU through the interpreter
        with torch.no_grad():
            logits = model(expected["tokens"])
            generated = model.generate(expected["tokens"][:, :21], max_new_tokens=3)  # prefill, then steps
        error = (logits - expected["logits"]).abs().max().item()
        print(error < 1e-4 * expected["logits"].abs().max().item(), torch.isnan(logits).any().item(),
              torch.equal(generated, torch.load("generated.pt")))
    """, env={"TRITON_INTERPRET": "1"})
    assert printed.split() == ["True", "False", "True"]


def test_an_export_into_a_non_empty_folder_asks_for_force(tmp_path):
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="--force"):
        composer.export(SPECS["tiny_mqar"], out)
    assert (out / "notes.txt").read_text() == "mine"
    composer.export(SPECS["tiny_mqar"], out, force=True)
    assert not (out / "notes.txt").exists() and (out / "model.safetensors").exists()


def test_a_folder_name_that_is_no_identifier_is_refused_with_a_suggestion(tmp_path):
    with pytest.raises(ExportError, match="tiny_mqar_v2"):
        composer.export(SPECS["tiny_mqar"], tmp_path / "tiny-mqar-v2")


def test_weights_of_another_spec_name_the_first_mismatching_tensor(tmp_path):
    other = composer.build(composer.load(SPECS["every_kind"]))
    composer.save(other, tmp_path / "other.safetensors")
    with pytest.raises(WeightsError, match="embedding.weight.*shape"):
        composer.export(SPECS["tiny_mqar"], tmp_path / "tiny", weights=tmp_path / "other.safetensors")


def test_trained_weights_reach_the_export(tmp_path):
    model = composer.build(composer.load(SPECS["tiny_mqar"]))
    with torch.no_grad():
        model.embedding.weight.fill_(0.25)
    composer.save(model, tmp_path / "trained.safetensors")
    composer.export(SPECS["tiny_mqar"], tmp_path / "tiny", weights=tmp_path / "trained.safetensors", dtype="bf16")
    weights = load_file(tmp_path / "tiny" / "model.safetensors")
    assert weights["model.embedding.weight"].dtype == torch.bfloat16
    assert torch.all(weights["model.embedding.weight"] == 0.25)


def test_safetensors_files_agree_with_the_library_both_ways(tmp_path):
    library = pytest.importorskip("safetensors.torch")
    tensors = {"a": torch.randn(3, 5), "b": torch.randn(4).bfloat16(), "c": torch.arange(7), "d": torch.empty(0, 2)}
    save_file(tensors, tmp_path / "ours.safetensors", {"note": "x"})
    theirs = library.load_file(tmp_path / "ours.safetensors")
    assert all(torch.equal(theirs[name], tensors[name]) for name in tensors)
    library.save_file(tensors, tmp_path / "theirs.safetensors")
    ours = load_file(tmp_path / "theirs.safetensors")
    assert all(torch.equal(ours[name], tensors[name]) for name in tensors)


def test_a_file_that_is_not_safetensors_is_a_clear_error(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_file(tmp_path / "bad.safetensors")


def test_mixc_export_prints_how_to_load(tmp_path, capsys):
    from composer.cli import main
    assert main(["export", str(SPECS["tiny_mqar"]), "-o", str(tmp_path / "tiny")]) == 0
    assert "tiny.from_pretrained" in capsys.readouterr().out
    assert main(["export", str(SPECS["tiny_mqar"]), "-o", str(tmp_path / "tiny")]) == 2
    assert "--force" in capsys.readouterr().err
