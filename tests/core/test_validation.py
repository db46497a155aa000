"""Plain-data specs (JSON/YAML/dict form): typing, derived sizes, and located messages."""

import copy
import json

import pytest
import yaml

import composer
from composer.grammar.errors import SpecError
from composer.resolve import resolve

from .conftest import small_spec_data


def error_of(data) -> str:
    with pytest.raises(SpecError) as info:
        composer.validate(data)
    return str(info.value)


def test_valid_data_gives_typed_spec(small_data):
    spec = composer.validate(small_data)
    assert spec.blocks["ssd"].mixer.state == 16
    assert spec.blocks["attn"].channel.kind == "swiglu"
    assert spec.blocks["ssd"].channel.kind == "none"


def test_derived_sizes_are_filled_by_resolve_not_by_load(small_data):
    spec = composer.validate(small_data)
    assert spec.blocks["ssd"].mixer.heads is None  # derived, not repeated
    resolved = resolve(spec)
    assert resolved.blocks["ssd"].mixer.heads == 2 * 64 // 16
    assert resolved.blocks["attn"].mixer.head_dim == 16
    assert resolved.blocks["attn"].channel.hidden == 192  # 8/3 * 64 rounded up to 64


def test_json_and_yaml_files_load_the_same_spec(small_data, tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(small_data))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(small_data))
    from_json = composer.load(tmp_path / "s.json")
    assert from_json == composer.load(tmp_path / "s.yaml") == composer.validate(small_data)


def test_unknown_mixer_kind_suggests_the_closest(small_data):
    small_data["blocks"]["ssd"]["mixer"]["kind"] = "semiseprable"
    message = error_of(small_data)
    assert "unknown mixer kind `semiseprable`" in message
    assert "did you mean `semiseparable`?" in message
    assert "blocks.ssd.mixer.kind" in message


def test_unknown_parameter_suggests_the_closest(small_data):
    small_data["blocks"]["ssd"]["mixer"]["stat"] = 8
    message = error_of(small_data)
    assert "unknown parameter `stat`" in message and "`state`" in message


def test_wrong_type_names_the_field(small_data):
    small_data["blocks"]["attn"]["mixer"]["heads"] = "four"
    assert "blocks.attn.mixer.heads" in error_of(small_data)


@pytest.mark.parametrize("mixer, needle", [
    ({"kind": "attention", "heads": 3}, "heads 3 does not divide d_model 64"),
    ({"kind": "attention", "heads": 4, "kv_heads": 3}, "kv_heads 3 must divide heads 4"),
    ({"kind": "attention", "heads": 4, "window": 64}, "window 64 must be smaller than max_len 64"),
    ({"kind": "semiseparable", "head_dim": 48, "state": 16}, "head_dim 48 does not divide the inner width 128"),
    ({"kind": "semiseparable", "head_dim": 16, "heads": 4}, "heads 4 x head_dim 16 must equal expand x d_model = 128"),
    ({"kind": "semiseparable", "head_dim": 16, "groups": 3}, "groups 3 must divide heads 8"),
    ({"kind": "semiseparable", "head_dim": 16, "conv": 1}, "conv 1 is a per-channel scale"),
    ({"kind": "semiseparable", "head_dim": 16, "chunk": 48}, "chunk 48 must be a power of two"),
    ({"kind": "semiseparable", "head_dim": 16, "expand": 1.01}, "is not a whole width"),
    ({"kind": "lowrank", "head_dim": 16, "causal": False, "decay": "fixed"}, "decay needs causal = true"),
    ({"kind": "monarch", "blocks": 5}, "blocks 5 must divide max_len 64"),
])
def test_inconsistent_sizes_are_explained(small_data, mixer, needle):
    small_data["blocks"]["ssd"]["mixer"] = mixer
    assert needle in error_of(small_data)


def test_schedule_names_must_exist(small_data):
    small_data["layers"] = ["attn", "sdd"]
    message = error_of(small_data)
    assert "no block named `sdd`" in message and "did you mean `ssd`?" in message


def test_empty_schedule_is_rejected(small_data):
    small_data["layers"] = []
    assert "no layers" in error_of(small_data)


def test_block_names_must_be_identifiers(small_data):
    small_data["blocks"]["class"] = small_data["blocks"].pop("attn")
    small_data["layers"] = ["class"]
    assert "not a valid name" in error_of(small_data)


def test_extends_overrides_parameters_and_replaces_other_kinds(small_data):
    small_data["blocks"]["local"] = {"extends": "attn", "window": 32}
    small_data["blocks"]["ssm"] = {"extends": "attn", "mixer": {"kind": "semiseparable", "head_dim": 16,
                                                                "chunk": 16}}
    spec = composer.validate(small_data)
    assert spec.blocks["local"].mixer.window == 32 and spec.blocks["local"].mixer.kv_heads == 2
    assert spec.blocks["ssm"].mixer.kind == "semiseparable"
    assert spec.blocks["ssm"].channel.kind == "swiglu"  # inherited


def test_extends_cycle_and_unknown_parent_are_reported(small_data):
    small_data["blocks"]["a"] = {"extends": "b"}
    small_data["blocks"]["b"] = {"extends": "a"}
    assert "inheritance cycle" in error_of(copy.deepcopy(small_data))
    small_data["blocks"]["a"] = {"extends": "atn"}
    assert "no block named `atn` to extend" in error_of(small_data)


def test_inherited_problem_is_reported_once_at_the_parent(small_data):
    small_data["blocks"]["attn"]["mixer"]["haeds"] = 4
    small_data["blocks"]["local"] = {"extends": "attn", "window": 32}
    message = error_of(small_data)
    assert message.count("unknown parameter `haeds`") == 1


def test_search_holes_are_checked_before_any_training(small_data):
    small_data["layers"] = {"ratio": {"attn": 1, "ssd": 3}, "depth": 8}
    good = {"space": [{"path": "ssd.mixer.state", "choices": [16, 32]},
                      {"path": "attention_fraction", "low": 0.0, "high": 0.5},
                      {"path": "lr", "low": 1e-4, "high": 1e-2, "log": True}]}
    composer.validate({**small_data, "search": good})
    bad_value = {"space": [{"path": "ssd.mixer.groups", "choices": [1, 3]}]}
    assert "`ssd.mixer.groups = 3` gives an invalid spec" in error_of({**small_data, "search": bad_value})
    bad_path = {"space": [{"path": "ssd.mixer.stat", "choices": [16]}]}
    assert "did you mean `ssd.mixer.state`?" in error_of({**small_data, "search": bad_path})
    bad_range = {"space": [{"path": "lr", "low": 0.0, "high": 1.0, "log": True}]}
    assert "log range needs low > 0" in error_of({**small_data, "search": bad_range})


def test_schedule_holes_need_a_ratio(small_data):
    small_data["search"] = {"space": [{"path": "placement", "choices": ["front"]}]}
    assert "is not something a search can vary here" in error_of(small_data)


def test_schema_describes_every_mixer_kind():
    schema = json.dumps(composer.Spec.model_json_schema())
    for kind in ("attention", "semiseparable", "quasiseparable", "lowrank", "monarch", "swiglu", "monarch_mlp"):
        assert f'"{kind}"' in schema


def test_small_spec_data_is_valid():
    composer.validate(small_spec_data())
