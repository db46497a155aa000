"""Every check, whichever stage finds it, points back at the spec's line and column."""

import pytest

import composer
from composer.grammar.errors import SpecError

SPEC = """model m {
  d_model = 64
  vocab   = 100
  max_len = 128
  block attn {
    mixer   = attention(heads = 4)
    channel = swiglu()
  }
  block local extends attn { window = 32 }
  block ssd {
    mixer = semiseparable(state = 16, head_dim = 16, chunk = 32)
  }
  layers = ratio(attn : ssd = 1 : 3) * 8
  search {
    ssd.mixer.state in {16, 32}
  }
}
"""


def error_at(old: str, new: str) -> SpecError:
    text = SPEC.replace(old, new)
    assert text != SPEC
    with pytest.raises(SpecError) as info:
        composer.loads(text, "m.mix")
    return info.value


def only(error: SpecError):
    assert len(error.diagnostics) == 1, error.render()
    return error.diagnostics[0]


def test_the_example_itself_is_valid():
    assert composer.loads(SPEC).blocks["local"].mixer.window == 32


def test_type_error_points_at_the_value():
    d = only(error_at("heads = 4", "heads = four"))
    assert (d.span.line, d.span.column) == (6, 33)
    assert "heads" in d.message


def test_size_inconsistency_points_at_the_parameter():
    d = only(error_at("heads = 4", "heads = 3"))
    assert d.span.line == 6 and "heads 3 does not divide d_model 64" in d.message


def test_inherited_bare_parameter_error_points_at_where_it_was_written():
    d = only(error_at("window = 32", "window = 128"))
    assert (d.span.line, d.span.column) == (9, 39)
    assert "window 128 must be smaller than max_len 128" in d.message


def test_unknown_bare_parameter_in_extending_block():
    d = only(error_at("window = 32", "windw = 32"))
    assert d.span.line == 9 and d.hint == "did you mean `window`?"


def test_unknown_block_in_ratio_points_at_its_name():
    d = only(error_at("attn : ssd", "attn : sdd"))
    assert d.span.line == 13 and "no block named `sdd`" in d.message


def test_bad_search_choice_points_at_the_entry():
    d = only(error_at("ssd.mixer.state in {16, 32}", "ssd.mixer.groups in {1, 3}"))
    assert d.span.line == 15 and "`ssd.mixer.groups = 3` gives an invalid spec" in d.message


def test_rendered_error_underlines_the_text():
    text = error_at("chunk = 32", "chunk = 48").render()
    assert "m.mix:11:" in text
    line, underline = text.splitlines()[1:3]
    assert "chunk = 48" in line
    start = underline.index("^")
    assert line[start:start + 2] == "48"


@pytest.mark.parametrize("layers", ["[attn, sdd] * 4", "[attn] * 2 + [sdd, ssd] * 3",
                                    'pattern("AS" * 4, A = attn, S = sdd)'])
def test_unknown_block_repeated_by_the_schedule_is_reported_once(layers):
    d = only(error_at("ratio(attn : ssd = 1 : 3) * 8", layers))
    assert d.span.line == 13 and d.message == "no block named `sdd`" and d.hint == "did you mean `ssd`?"


def test_unknown_block_written_twice_is_reported_at_each_place():
    error = error_at("ratio(attn : ssd = 1 : 3) * 8", "[sdd, attn, sdd]")
    assert [(d.span.line, d.span.column) for d in error.diagnostics] == [(13, 13), (13, 24)]


def underlined(error: SpecError) -> tuple[str, str]:
    """The underlined line and the text under the carets."""
    line, underline = error.render().splitlines()[1:3]
    start, end = underline.index("^"), underline.rindex("^") + 1
    return line, line[start:end]


@pytest.mark.parametrize("old, new, line, column", [
    ("state = 16", "stat = 16", 11, 27),                   # a call's parameter
    ("max_len = 128", "max_ln = 128", 4, 3),               # a model setting
    ("window = 32", "mixer.windw = 32", 9, 36),            # a dotted key: its last part
])
def test_unknown_key_underlines_the_key(old, new, line, column):
    error = error_at(old, new)
    d = only(error)
    assert (d.span.line, d.span.column) == (line, column)
    assert d.span.end_column - d.span.column == len(new.split(" = ")[0].split(".")[-1])
    assert underlined(error)[1] == new.split(" = ")[0].split(".")[-1]
    assert d.hint.startswith("did you mean")


def test_an_unknown_bare_key_in_a_block_underlines_the_key():
    d = only(error_at("window = 32", "windw = 32"))
    line = SPEC.replace("window = 32", "windw = 32").splitlines()[d.span.line - 1]
    assert line[d.span.column - 1:d.span.end_column - 1] == "windw" and "did you mean `window`" in d.hint
