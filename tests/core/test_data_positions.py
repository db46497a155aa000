"""JSON and YAML specs report errors at their line and column, underlined as DSL errors are."""

import json

import pytest

import composer
from composer.cli import main
from composer.grammar.errors import SpecError

JSON_SPEC = """{
  "name": "m",
  "d_model": 64,
  "vocab": 100,
  "blocks": {
    "ssd": {"mixer": {"kind": "semiseparable", "state": 16, "head_dim": 16, "chunk": 32}},
    "attn": {"mixer": {"kind": "attention", "heads": 4}}
  },
  "layers": ["ssd", "attn"]
}
"""

YAML_SPEC = """name: m
d_model: 64
vocab: 100
blocks:
  ssd:
    mixer: {kind: semiseparable, state: 16, head_dim: 16, chunk: 32}
  attn:
    mixer:
      kind: attention
      heads: 4
layers: [ssd, attn]
"""


def error_in(tmp_path, name: str, text: str) -> SpecError:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        composer.load(path)
    return info.value


def only(error: SpecError):
    assert len(error.diagnostics) == 1, error.render()
    return error.diagnostics[0]


def underlined(error: SpecError) -> str:
    line, underline = error.render().splitlines()[1:3]
    return line[underline.index("^"):underline.rindex("^") + 1]


@pytest.mark.parametrize("name, text", [("m.json", JSON_SPEC), ("m.yaml", YAML_SPEC)])
def test_the_examples_themselves_are_valid(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert composer.load(path).blocks["ssd"].mixer.state == 16


@pytest.mark.parametrize("name, text, old, new, line, column, text_under", [
    ("m.json", JSON_SPEC, '"semiseparable"', '"semiseprable"', 6, 31, '"semiseprable"'),
    ("m.yaml", YAML_SPEC, "kind: semiseparable", "kind: semiseprable", 6, 19, "semiseprable"),
])
def test_unknown_mixer_kind_points_at_its_line_and_column(tmp_path, name, text, old, new, line, column,
                                                         text_under):
    error = error_in(tmp_path, name, text.replace(old, new))
    d = only(error)
    assert (d.span.file, d.span.line, d.span.column) == (str(tmp_path / name), line, column)
    assert d.message == "unknown mixer kind `semiseprable`" and d.hint == "did you mean `semiseparable`?"
    assert error.render().startswith(f"{tmp_path / name}:{line}:{column}: error:")
    assert underlined(error) == text_under


@pytest.mark.parametrize("name, text, old, new, line, column, text_under", [
    ("m.json", JSON_SPEC, '"heads": 4', '"heads": "four"', 7, 54, '"four"'),
    ("m.yaml", YAML_SPEC, "heads: 4", "heads: four", 10, 14, "four"),
    ("m.yaml", YAML_SPEC, "head_dim: 16", "head_dim: 24", 6, 55, "24"),  # a check after typing
])
def test_bad_value_points_at_the_value(tmp_path, name, text, old, new, line, column, text_under):
    error = error_in(tmp_path, name, text.replace(old, new))
    d = only(error)
    assert (d.span.line, d.span.column) == (line, column)
    assert underlined(error) == text_under


@pytest.mark.parametrize("name, text, old, new, line, column", [
    ("m.json", JSON_SPEC, '"state": 16', '"stat": 16', 6, 48),
    ("m.yaml", YAML_SPEC, "heads: 4", "heads: 4\n      windw: 8", 11, 7),
])
def test_unknown_key_underlines_the_key(tmp_path, name, text, old, new, line, column):
    error = error_in(tmp_path, name, text.replace(old, new))
    d = only(error)
    assert (d.span.line, d.span.column) == (line, column)
    assert underlined(error).strip('"') in ("stat", "windw") and d.hint.startswith("did you mean")


def test_json_keeps_its_own_semantics(tmp_path):
    """The data is JSON's (last duplicate wins, `1.6e1` a number, which YAML 1.1 reads as a string);
    the error for the duplicate points at the one that counts."""
    text = JSON_SPEC.replace('"state": 16', '"state": 1.6e1').replace('"heads": 4', '"heads": 3, "heads": 4')
    path = tmp_path / "m.json"
    path.write_text(text)
    assert json.loads(text)["blocks"]["attn"]["mixer"]["heads"] == 4
    spec = composer.load(path)
    assert spec.blocks["ssd"].mixer.state == 16 and spec.blocks["attn"].mixer.heads == 4
    d = only(error_in(tmp_path, "m.json", text.replace('"heads": 4', '"heads": "four"')))
    assert (d.span.line, d.span.column) == (7, 66)


def test_tab_indented_json_keeps_its_columns(tmp_path):
    text = JSON_SPEC.replace("  ", "\t").replace('"heads": 4', '"heads": "four"')
    d = only(error_in(tmp_path, "m.json", text))
    assert (d.span.line, d.span.column) == (7, 52)


def test_mixc_check_renders_a_yaml_error_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(YAML_SPEC.replace("kind: semiseparable", "kind: semiseprable"))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6:19: error: unknown mixer kind `semiseprable`" in err
    assert "Traceback" not in err and "^^^^^^^^^^^^" in err
