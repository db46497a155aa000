"""Hostile and careless input: each gives composer's own error, fast, in little memory, never a traceback."""

import json
import os
import time

import pytest

import composer
from composer.cli import main
from composer.grammar.errors import SpecError
from composer.planner import plan, planned_params

TINY = """model m {{
  d_model = 16
  vocab = 32
  max_len = 32
  block a {{ mixer = attention(heads = 2) }}
  block b {{ mixer = semiseparable(state = 8, head_dim = 8, chunk = 16) }}
  layers = {layers}
}}
"""
DATA = {"name": "m", "d_model": 16, "vocab": 32, "max_len": 32,
        "blocks": {"a": {"mixer": {"kind": "attention", "heads": 2}}}, "layers": ["a"]}


def _error(load, *args) -> str:
    started = time.monotonic()
    with pytest.raises(SpecError) as caught:
        load(*args)
    assert time.monotonic() - started < 10, "took too long to refuse"
    return str(caught.value)


# ── sizes, measured before anything is expanded ──────────────────────────────

def test_nested_repetition_is_measured_not_built():
    text = TINY.format(layers="[[[[a] * 9999] * 9999] * 9999] * 9999")
    assert "expands to" in _error(composer.loads, text) and "COMPOSER_MAX_VALUE_NODES" in _error(composer.loads, text)


def test_a_ratio_over_a_trillion_layers_is_refused_before_it_is_resolved():
    message = _error(composer.loads, TINY.format(layers="ratio(a : b = 1 : 3) * 1000000000000"))
    assert "1,000,000,000,000 layers" in message and "COMPOSER_MAX_ITEMS" in message


def test_a_huge_integer_literal_is_refused():
    message = _error(composer.loads, TINY.format(layers="[a] * " + "9" * 5000))
    assert "number literal of 5,000 characters" in message


def test_a_multi_megabyte_string_literal_is_refused():
    assert "string literal of" in _error(composer.loads, TINY.format(layers='pattern("' + "A" * 200_000 + '", A = a)'))


def test_a_spec_file_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "big.mix"
    path.write_text(TINY.format(layers="[a]") + "#" * 5000)
    monkeypatch.setenv("COMPOSER_MAX_FILE_BYTES", "4096")
    assert "over the spec file limit" in _error(composer.load, path)
    monkeypatch.setenv("COMPOSER_MAX_FILE_BYTES", "100000")  # raised: the same file loads
    assert composer.load(path).name == "m"


def test_limits_are_raised_by_their_variable(monkeypatch):
    text = TINY.format(layers="[a] * 20000")
    assert "at most 10,000" in _error(composer.loads, text)
    monkeypatch.setenv("COMPOSER_MAX_ITEMS", "20000")
    assert len(composer.schedule.layer_names(composer.loads(text))) == 20000


def test_yaml_alias_bomb_is_measured_not_expanded(tmp_path):
    lines = ["name: m", "d_model: 16", "vocab: 32", "max_len: 32", "blocks: {a: {mixer: {kind: attention, heads: 2}}}",
             "layers: [a]", "search:", "  settings:", "    l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        lines.append(f"    l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "YAML aliases count once per use" in _error(composer.load, path)


def test_deeply_nested_json_and_yaml_give_a_spec_error(tmp_path):
    for suffix, text in ((".json", "[" * 100_000 + "]" * 100_000), (".yaml", "[" * 100_000 + "]" * 100_000),
                         (".json", json.dumps({**DATA, "search": {"settings": {"x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}}))):
        path = tmp_path / f"deep{suffix}"
        path.write_text(text)
        message = _error(composer.load, path)
        assert "nest" in message


def test_integers_past_pythons_digit_limit_in_json_and_yaml(tmp_path):
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"huge{suffix}"
        path.write_text(json.dumps(DATA).replace('"vocab": 32', '"vocab": ' + "9" * 5000))
        assert "not a usable" in _error(composer.load, path)


def test_a_trillion_sized_model_is_refused_by_build_with_its_estimate():
    spec = composer.loads(TINY.format(layers="[a]").replace("vocab = 32", "vocab = 1000000000000"))
    assert plan(spec).params == planned_params(composer.resolve.resolve(spec))  # check and plan still work
    message = _error(composer.build, spec)
    assert "plans 16,000,000," in message and "GiB" in message and "COMPOSER_MAX_BUILD_BYTES" in message


def test_planned_params_match_the_plan_for_every_example():
    from pathlib import Path
    for path in sorted((Path(__file__).parents[2] / "examples").glob("*.mix")):
        if "model " not in path.read_text():
            continue  # a file of shared blocks
        parsed = composer.grammar.parser.parse_file(path)
        for model in parsed.models:
            spec = composer.load(path, model=model)
            assert planned_params(composer.resolve.resolve(spec)) == plan(spec).params, path


def test_plan_is_linear_in_layers():
    spec = composer.loads(TINY.format(layers="[a, b] * 5000"))
    started = time.monotonic()
    plan(spec)
    assert time.monotonic() - started < 20  # 10,000 layers took 96 s when each layer re-scanned the graph


def test_monarch_with_a_huge_max_len_is_refused_at_once():
    text = TINY.format(layers="[c]").replace("block a", "block c { mixer = monarch() }\n  block a").replace(
        "max_len = 32", "max_len = 1000000000000000000")
    assert "COMPOSER_MAX_MONARCH_LEN" in _error(composer.loads, text)


# ── include ──────────────────────────────────────────────────────────────────

def _including(tmp_path, target: str):
    spec = tmp_path / "spec" / "main.mix"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(f'include "{target}"\n' + TINY.format(layers="[a]"))
    return spec


def test_include_outside_the_spec_folder_is_refused(tmp_path):
    (tmp_path / "outside.mix").write_text("block z { mixer = lowrank(head_dim = 8) }\n")
    for target in ("../outside.mix", "/etc/passwd", str(tmp_path / "outside.mix")):
        assert "outside the spec's folder" in _error(composer.load, _including(tmp_path, target))


def test_include_path_names_another_folder(tmp_path, monkeypatch):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "blocks.mix").write_text("block z { mixer = lowrank(head_dim = 8) }\n")
    spec = _including(tmp_path, "../shared/blocks.mix")
    monkeypatch.setenv("COMPOSER_INCLUDE_PATH", str(tmp_path / "shared"))
    assert composer.load(spec).name == "m"


def test_include_reads_only_regular_files(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSER_INCLUDE_PATH", "/dev:/proc")
    for target in ("/dev/zero", "/proc/self/environ"):
        message = _error(composer.load, _including(tmp_path, target))
        assert "not a regular file" in message or "not a spec file" in message
    fifo = tmp_path / "spec" / "pipe.mix"
    os.mkfifo(fifo)
    assert "not a regular file" in _error(composer.load, _including(tmp_path, "pipe.mix"))  # no hang
    (tmp_path / "spec" / "dir.mix").mkdir()
    assert "directory" in _error(composer.load, _including(tmp_path, "dir.mix"))


def test_include_error_never_echoes_a_foreign_files_text(tmp_path):
    secret = tmp_path / "spec" / "secret.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("root:x:0:0:SECRET-TOKEN:/root:/bin/bash\n")
    message = _error(composer.load, _including(tmp_path, "secret.txt"))
    assert "not a spec file" in message and "SECRET" not in message and "root:x" not in message


# ── loader inputs that gave raw tracebacks ───────────────────────────────────

def test_non_utf8_and_directories_are_spec_errors(tmp_path):
    for suffix in (".json", ".yaml", ".mix"):
        path = tmp_path / f"latin1{suffix}"
        path.write_bytes(b'{"name": "caf\xe9"}')
        assert "not UTF-8" in _error(composer.load, path)
        folder = tmp_path / f"folder{suffix}"
        folder.mkdir()
        assert "directory" in _error(composer.load, folder)


@pytest.mark.parametrize("change, expected", [
    ({"blocks": {"a": {"extends": {"x": 1}, "mixer": {"kind": "attention"}}}}, "`extends` names a block"),
    ({"blocks": {"a": {"mixer": {"kind": {"x": 1}}}}}, "unknown mixer kind"),
    ({"layers": {"ratio": {"a": float("inf"), "b": 1}, "depth": 4}}, "not a finite number"),
    ({"norm": {"kind": "rmsnorm", "eps": float("nan")}}, "not a finite number"),
    ({"blocks": {"model": {"mixer": {"kind": "attention", "heads": 2}}}, "layers": ["model"]}, "cannot be named `model`"),
    ({"name": "m" * 300}, "too long"),
    ({"search": {"space": [{"path": "a.mixer.heads", "choices": []}]}}, "empty choice set"),
])
def test_a_hostile_value_is_a_spec_error(change, expected):
    assert expected in _error(composer.load, {**DATA, **change})


def test_json_infinity_is_located(tmp_path):
    path = tmp_path / "inf.json"
    path.write_text(json.dumps({**DATA, "layers": {"ratio": {"a": 1, "b": 1}, "depth": 4}}).replace(
        '"a": 1,', '"a": Infinity,'))
    assert "not a finite number" in _error(composer.load, path)


def test_a_newline_in_the_file_name_stays_in_the_header_comment(tmp_path, capsys):
    path = tmp_path / "evil\nimport os; os.system('x')\n.mix"
    path.write_text(TINY.format(layers="[a]"))
    assert main(["source", str(path)]) == 0
    source = capsys.readouterr().out
    compile(source, "generated", "exec")
    assert not any(line.startswith("import os") for line in source.splitlines())


# ── runtime inputs to a built model ──────────────────────────────────────────

@pytest.fixture(scope="module")
def built():
    import torch
    torch.manual_seed(0)
    return composer.build(composer.loads(TINY.format(layers="[a, b]").replace("vocab = 32", "vocab = 30 pad_to 16")))


@pytest.mark.parametrize("make, error, expected", [
    (lambda t: t.tensor([[3, 30]]), ValueError, "0 .. 29 (the spec's vocab); got ids from 3 to 30"),
    (lambda t: t.tensor([[-1, 2]]), ValueError, "got ids from -1"),
    (lambda t: t.zeros(1, 0, dtype=t.long), ValueError, "empty"),
    (lambda t: t.zeros(0, 4, dtype=t.long), ValueError, "empty"),
    (lambda t: t.zeros(1, 33, dtype=t.long), ValueError, "past the model's max_len 32"),
    (lambda t: t.zeros(4, dtype=t.long), ValueError, "add a batch dimension"),
    (lambda t: t.zeros(1, 2, 3, dtype=t.long), ValueError, "shape (batch, length); got shape (1, 2, 3)"),
    (lambda t: t.zeros(1, 4), TypeError, "integer tensor"),
    (lambda t: [[1, 2]], TypeError, "got list"),
])
def test_wrong_runtime_input_says_what_to_change(built, make, error, expected):
    import torch
    with pytest.raises(error) as caught:
        built(make(torch))
    assert expected in str(caught.value)


def test_good_runtime_input_still_runs(built):
    import torch
    logits = built(torch.tensor([[0, 29, 5]]))
    assert logits.shape == (1, 3, 32) and torch.isfinite(logits).all()
