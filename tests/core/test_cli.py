"""`mixc` as a user runs it: exit codes, located errors, plan outputs."""

import json
from pathlib import Path

import pytest

from composer.cli import main

EXAMPLES = Path(__file__).parents[2] / "examples"
BAD_SPEC = """model broken {
  d_model = 64
  vocab = 100
  block a { mixer = semiseprable(state = 16) }
  layers = [a] * 2
}
"""


def test_check_valid_spec_exits_zero(capsys):
    assert main(["check", str(EXAMPLES / "tiny_mqar.mix")]) == 0
    assert "is valid: 2 layers" in capsys.readouterr().out


def test_check_invalid_spec_exits_two_with_location_and_hint(tmp_path, capsys):
    path = tmp_path / "broken.mix"
    path.write_text(BAD_SPEC)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4:21: error: unknown mixer kind `semiseprable`" in err
    assert "^^^^^^^^^^^^" in err and "did you mean `semiseparable`?" in err
    assert "Traceback" not in err


def test_check_missing_file_exits_two(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.mix")]) == 2
    assert "no such spec file" in capsys.readouterr().err


def test_check_lists_search_holes(capsys):
    assert main(["check", "--holes", str(EXAMPLES / "hybrid_1b.mix")]) == 0
    out = capsys.readouterr().out
    assert "attention_fraction" in out and "ssm.mixer.state" in out


def test_plan_prints_table_and_writes_json_and_dot(tmp_path, capsys):
    out_json, out_dot = tmp_path / "plan.json", tmp_path / "plan.dot"
    assert main(["plan", str(EXAMPLES / "mamba2_130m.mix"), "--json", str(out_json), "--dot", str(out_dot)]) == 0
    out = capsys.readouterr().out
    assert "128,989,632" in out
    data = json.loads(out_json.read_text())
    assert data["totals"]["params"] == 128_989_632
    assert len(data["layers"]) == 24
    assert out_dot.read_text().startswith('digraph "mamba2_130m"')


def test_source_prints_the_generated_module(capsys):
    assert main(["source", str(EXAMPLES / "tiny_mqar.mix")]) == 0
    assert "def make_model(plans: dict | None = None)" in capsys.readouterr().out


def test_schema_is_json(capsys):
    assert main(["schema"]) == 0
    assert "properties" in json.loads(capsys.readouterr().out)


def test_two_models_need_a_name(tmp_path, capsys):
    path = tmp_path / "two.mix"
    body = "{ d_model = 64\n vocab = 100\n block a { mixer = attention(heads = 4) }\n layers = [a] }\n"
    path.write_text(f"model one {body}model two {body}")
    assert main(["check", str(path)]) == 2
    assert "defines 2 models" in capsys.readouterr().err
    assert main(["check", str(path), "--model", "two"]) == 0


@pytest.mark.parametrize("name", ["mamba2_130m", "hybrid_1b", "griffin_local", "hydra_encoder", "m2_bert",
                                  "tiny_mqar", "mqar_search", "qwen3_next_style"])
def test_every_example_checks(name):
    assert main(["check", str(EXAMPLES / f"{name}.mix")]) == 0
