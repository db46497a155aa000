"""Structured fuzzing through every stage: generated specs, as DSL text, JSON, YAML and dicts, either load
and plan (and, when small, build) or fail with SpecError; nothing else escapes, nothing hangs.

The generator draws specs from the spec's own structure (the registered kinds and their fields), with
values that are plausible (small sizes) or hostile (zero, negative, huge, non-finite, wrong types, names
where numbers go), so most examples get past the parser and many past validation into the planner.
"""

from __future__ import annotations

import json
import os
import math
import resource

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import composer
from composer.grammar.errors import SpecError
from composer.kinds import FIELDS
from composer.planner import planned_params

SIZES = st.sampled_from([1, 2, 4, 8, 16, 32, 64, 24, 3])
HOSTILE_NUMBERS = st.sampled_from([0, -1, 10**12, 2**63, 10**40, 0.5, 1e-9, 1e308, math.inf, -math.inf, math.nan])
HOSTILE_OTHER = st.sampled_from(["none", "x", "", True, None, [], {}, [1, 2], {"kind": {}}, {"a": 1}, "model"])
VALUES = st.one_of(SIZES, HOSTILE_NUMBERS, HOSTILE_OTHER, st.booleans())
# A part that plans at d_model 16 .. 64, for the generator to start from.
VALID_PARTS = {"attention": {"heads": 2}, "semiseparable": {"state": 8, "head_dim": 8, "chunk": 16},
               "quasiseparable": {"state": 8, "head_dim": 8, "chunk": 16}, "lowrank": {"head_dim": 8},
               "monarch": {}, "delta": {"head_dim": 8, "chunk": 16}, "mlp": {"hidden": 32}, "swiglu": {"hidden": 32},
               "monarch_mlp": {"hidden": 32},
               "none": {}}


def rarely(draw, plausible, hostile):
    """The plausible value nine times in ten: enough hostility to find faults, enough sense to get through."""
    return draw(hostile) if draw(st.integers(0, 9)) == 0 else draw(plausible)


@st.composite
def parts(draw, role: str) -> dict:
    kind = draw(st.sampled_from(sorted(FIELDS[role])))
    part = {"kind": kind, **VALID_PARTS.get(kind, {})}
    fields = [f for f in FIELDS[role][kind].model_fields if f != "kind"]
    for name in draw(st.lists(st.sampled_from(fields), unique=True, max_size=2)) if fields else []:
        part[name] = rarely(draw, SIZES, VALUES)
    return part


@st.composite
def specs(draw) -> dict:
    names = draw(st.lists(st.sampled_from(["a", "b", "ssd", "attn", "x1"]), min_size=2, max_size=3, unique=True))
    if draw(st.integers(0, 9)) == 0:
        names[0] = "model"
    blocks = {}
    for name in names:
        block = {"mixer": draw(parts("sequence"))}
        if draw(st.booleans()):
            block["channel"] = draw(parts("channel"))
        if draw(st.integers(0, 9)) == 0:
            block["extends"] = draw(st.sampled_from(names + ["nowhere"]))
        blocks[name] = block
    if draw(st.booleans()):
        layers = draw(st.lists(st.sampled_from(names), min_size=1, max_size=6))
        if draw(st.integers(0, 9)) == 0:
            layers = draw(st.sampled_from([[], layers + ["missing"], "a", [layers]]))
    else:
        pair = draw(st.lists(st.sampled_from(names), min_size=2, max_size=2))
        layers = {"ratio": {pair[0]: rarely(draw, SIZES, HOSTILE_NUMBERS), pair[-1]: 1},
                  "placement": rarely(draw, st.sampled_from(["interleaved", "even", "front", "back", "middle"]),
                                      st.just("sideways")),
                  "depth": rarely(draw, SIZES, HOSTILE_NUMBERS)}
    data = {"name": rarely(draw, st.sampled_from(["m", "tiny"]), st.sampled_from(["m" * 80, "class", "1x"])),
            "d_model": rarely(draw, st.sampled_from([16, 32, 64]), HOSTILE_NUMBERS),
            "vocab": rarely(draw, st.sampled_from([32, 50]), HOSTILE_NUMBERS),
            "max_len": rarely(draw, st.sampled_from([32, 64]), HOSTILE_NUMBERS),
            "dtype": rarely(draw, st.just("fp32"), st.sampled_from(["bf16", "fp8"])),
            "blocks": blocks, "layers": layers}
    if draw(st.integers(0, 3)) == 0:
        path = draw(st.sampled_from([f"{names[0]}.mixer.state", "attention_fraction", "lr", "d_model", "nowhere"]))
        entry = draw(st.sampled_from([{"choices": [8, 16]}, {"choices": []}, {"low": 0.0, "high": 1.0},
                                      {"low": 1.0, "high": 0.0}, {"low": -1.0, "high": 1.0, "log": True}]))
        data["search"] = {"space": [{"path": path, **entry}]}
    return data


def _dsl_value(value) -> str:
    """A value as DSL text: what the grammar can say of it; the rest is written as a quoted string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and math.isfinite(value):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str) and value.isidentifier():
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_dsl_value(v) for v in value) + "]"
    if isinstance(value, dict) and isinstance(value.get("kind"), str) and value["kind"].isidentifier():
        return value["kind"] + "(" + ", ".join(f"{k} = {_dsl_value(v)}" for k, v in value.items() if k != "kind") + ")"
    return json.dumps(str(value))


def to_dsl(data: dict) -> str:
    lines = [f"model {data['name']} {{"]
    for key in ("d_model", "vocab", "max_len", "dtype"):
        lines.append(f"  {key} = {_dsl_value(data[key])}")
    for name, block in data["blocks"].items():
        head = f"  block {name}" + (f" extends {block['extends']}" if "extends" in block else "")
        body = [f"{part} = {_dsl_value(block[part])}" for part in ("mixer", "channel") if part in block]
        lines.append(head + " { " + "; ".join(body) + " }")
    layers = data["layers"]
    if isinstance(layers, dict):
        shares = " : ".join(_dsl_value(v) for v in layers["ratio"].values())
        lines.append(f"  layers = ratio({' : '.join(layers['ratio'])} = {shares}, placement = {layers['placement']})"
                     f" * {_dsl_value(layers['depth'])}")
    else:
        lines.append(f"  layers = {_dsl_value(layers)}")
    if "search" in data:
        entry = data["search"]["space"][0]
        where = ("{" + ", ".join(_dsl_value(v) for v in entry["choices"]) + "}" if "choices" in entry
                 else f"{_dsl_value(entry['low'])} .. {_dsl_value(entry['high'])}" + (" log" if entry.get("log") else ""))
        lines.append(f"  search {{ {entry['path']} in {where} }}")
    return "\n".join(lines + ["}"]) + "\n"


def reaches_the_end_or_fails_cleanly(load) -> str:
    """'planned' when the spec loaded and planned (and built, when small), else 'refused'."""
    try:
        spec = load()
    except SpecError as error:
        assert str(error)
        return "refused"
    plan = composer.plan(spec)
    assert plan.params >= 0
    if planned_params(composer.resolve.resolve(spec)) < 200_000:
        try:
            composer.build(spec)
        except SpecError as error:  # over the build memory limit: refused before allocating
            assert "build memory limit" in str(error)
    return "planned"


# Every form starts from one spec that plans and one that is refused, so the last test's check holds for
# any draw; the generated examples then wander from these.
PLANS = {"name": "m", "d_model": 16, "vocab": 32, "max_len": 32, "dtype": "fp32",
         "blocks": {"a": {"mixer": {"kind": "attention", "heads": 2}},
                    "b": {"mixer": {"kind": "semiseparable", "state": 8, "head_dim": 8, "chunk": 16}}},
         "layers": {"ratio": {"a": 1, "b": 3}, "placement": "even", "depth": 4}}
REFUSED = {**PLANS, "d_model": math.inf}
FUZZ = settings(max_examples=int(os.environ.get("COMPOSER_FUZZ_EXAMPLES", "100")), deadline=10_000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
OUTCOMES: dict[str, set] = {}


@pytest.fixture(scope="module", autouse=True)
def memory_stays_small():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 1 << 20, f"the fuzzed specs grew this process by {grown_kib / 1024:.0f} MiB"


@FUZZ
@given(specs())
@example(PLANS)
@example(REFUSED)
def test_generated_dicts_load_and_plan_or_fail_cleanly(data):
    OUTCOMES.setdefault("dict", set()).add(reaches_the_end_or_fails_cleanly(lambda: composer.load(data)))


@FUZZ
@given(specs(), st.sampled_from([".json", ".yaml"]))
@example(PLANS, ".json")
@example(PLANS, ".yaml")
@example(REFUSED, ".json")
def test_generated_json_and_yaml_files_load_and_plan_or_fail_cleanly(tmp_path, data, suffix):
    path = tmp_path / f"spec{suffix}"
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    OUTCOMES.setdefault(suffix, set()).add(reaches_the_end_or_fails_cleanly(lambda: composer.load(path)))


@FUZZ
@given(specs())
@example(PLANS)
@example(REFUSED)
def test_generated_dsl_text_loads_and_plans_or_fails_cleanly(tmp_path, data):
    path = tmp_path / "spec.mix"
    path.write_text(to_dsl(data))
    OUTCOMES.setdefault(".mix", set()).add(reaches_the_end_or_fails_cleanly(lambda: composer.load(path)))


def test_the_fuzzing_reached_the_planner_in_every_form():
    """Run after the fuzz tests above (file order): each form had examples that got all the way through."""
    for form in ("dict", ".mix"):
        assert OUTCOMES.get(form) == {"planned", "refused"}, OUTCOMES
    assert "planned" in OUTCOMES.get(".json", set()) | OUTCOMES.get(".yaml", set()), OUTCOMES
