"""grammar/writer.py: a Spec written as .mix text reads back as the same Spec."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import composer
from composer.grammar.writer import format_value, to_mix
from composer.schedule import layer_names
from composer.search.space import SearchSpace

EXAMPLES = Path(__file__).parents[2] / "examples"
MODEL_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.mix") if p.name != "tiny_blocks.mix")


@pytest.mark.parametrize("path", MODEL_EXAMPLES, ids=lambda p: p.name)
def test_every_example_reads_back_as_the_same_spec(path):
    spec = composer.load(path)
    assert composer.loads(to_mix(spec)) == spec


def test_written_spec_stands_alone_without_its_includes(tmp_path):
    spec = composer.load(EXAMPLES / "mqar_search.mix")  # its blocks come from tiny_blocks.mix
    text = to_mix(spec)
    assert "include" not in text and "block attn" in text
    (tmp_path / "alone.mix").write_text(text)
    assert composer.load(tmp_path / "alone.mix") == spec


def test_defaults_are_left_out():
    text = to_mix(composer.load(EXAMPLES / "mamba2_130m.mix"))
    assert "mixer = semiseparable\n" in text  # every parameter of it is the default
    assert "rmsnorm" not in text and "tie_embeddings" not in text
    assert "vocab = 50277 pad_to 16" in text


def _search_points(example: str):
    spec = composer.load(EXAMPLES / example)
    values = {param.path: st.sampled_from(param.choices) if param.choices is not None
              else st.floats(param.low, param.high) for param in spec.search.space}
    return spec, st.fixed_dictionaries(values)


HYBRID, HYBRID_POINTS = _search_points("hybrid_1b.mix")
MQAR, MQAR_POINTS = _search_points("mqar_search.mix")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(point=st.one_of(HYBRID_POINTS.map(lambda p: (HYBRID, p)), MQAR_POINTS.map(lambda p: (MQAR, p))))
def test_searched_spec_reads_back_with_the_same_layers_and_blocks(point):
    spec, values = point
    concrete = SearchSpace(spec).concrete(values)
    again = composer.loads(to_mix(concrete))
    assert layer_names(again) == layer_names(concrete)
    assert again.model_copy(update={"layers": concrete.layers}) == concrete


RATIO_SPEC = """model ratio {
  d_model = 64
  vocab = 32
  block attn { mixer = attention(heads = 4) }
  block ssd { mixer = semiseparable(head_dim = 16) }
  layers = ratio(attn : ssd = 1 : 3, placement = interleaved) * 4
  search { attention_fraction in 0.0 .. 0.5 }
}"""


def test_fractional_ratio_is_written_as_whole_layer_counts():
    spec = SearchSpace(composer.loads(RATIO_SPEC)).concrete({"attention_fraction": 0.3})  # 0.3 : 0.7 of 4
    assert spec.layers.ratio == {"attn": 0.3, "ssd": 0.7}
    assert "ratio(attn : ssd = 1 : 3, placement = interleaved) * 4" in to_mix(spec)


def test_ratio_that_leaves_a_block_out_is_written_as_a_list():
    spec = SearchSpace(composer.loads(RATIO_SPEC)).concrete({"attention_fraction": 0.0})
    text = to_mix(spec)
    assert "layers = [ssd] * 4" in text
    assert layer_names(composer.loads(text)) == ["ssd"] * 4


def test_repeating_schedule_is_folded_to_its_period():
    text = to_mix(composer.load(EXAMPLES / "griffin_local.mix"))
    assert "layers = [rec, rec, local] * 8" in text


@pytest.mark.parametrize("value, text", [
    (True, "true"), (None, "none"), (3, "3"), (1e-12, "1e-12"), (0.1, "0.1"), (500000.0, "500000.0"),
    ("interleaved", "interleaved"), ("true", '"true"'), ("two words", '"two words"'), ('say "hi"', '"say \\"hi\\""'),
    ({"kind": "mqar", "pairs": 8}, "mqar(pairs = 8)"), ([1, "a"], "[1, a]"),
])
def test_values_are_spelt_so_they_read_back_as_written(value, text):
    assert format_value(value) == text


def test_search_settings_with_awkward_values_read_back(tmp_path):
    spec = composer.load(EXAMPLES / "mqar_search.mix")
    settings = {**spec.search.settings, "note": "a \"quoted\" note", "flag": "true", "deep": {"inner": 2}}
    odd = spec.model_copy(update={"search": spec.search.model_copy(update={"settings": settings})})
    assert composer.loads(to_mix(odd)) == odd


def test_value_without_a_spelling_is_refused():
    with pytest.raises(ValueError, match="no DSL spelling"):
        format_value(float("inf"))
    with pytest.raises(ValueError, match="line break"):
        format_value("two\nlines")
