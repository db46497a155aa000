"""Every problem is a SpecError at file:line:column, with the text underlined and a hint."""

from __future__ import annotations

import pytest

from composer.grammar.errors import SpecError
from composer.grammar.parser import parse_file, parse_text


def error_of(text: str, filename: str = "spec.mix") -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_text(text, filename)
    return caught.value


def where(error: SpecError) -> tuple[int, int]:
    span = error.diagnostics[0].span
    return span.line, span.column


def hint(error: SpecError) -> str:
    return error.diagnostics[0].hint or ""


def test_missing_equals_points_at_the_value_and_says_what_was_expected():
    error = error_of("model m {\n  d_model 768\n}\n")
    assert "spec.mix:2:11" in str(error)
    assert "expected `.` or `=`" in str(error)
    assert "^^^" in str(error)


def test_unclosed_brace_points_at_the_brace():
    error = error_of("model m {\n  d_model = 768\n")
    assert "spec.mix:1:9" in str(error) and "never closed" in str(error)
    assert "^" in str(error) and "`}`" in hint(error)


def test_stray_token_after_a_value():
    error = error_of("model m {\n  a = 1 2\n}\n")
    assert "spec.mix:2:9" in str(error) and "unexpected number `2`" in str(error)
    assert "^" in str(error)


def test_unclosed_paren_is_named_where_the_error_shows_up_later():
    error = error_of("model m {\n  a = f(x = 1\n  b = 2\n}\n")
    assert where(error) == (3, 3)
    assert "`(` at spec.mix:2:8 is not closed" in hint(error)


def test_unterminated_string():
    error = error_of('model m {\n  a = "abc\n}\n')
    assert where(error) == (2, 7) and "unterminated string" in str(error)


def test_unknown_character():
    error = error_of("model m {\n  a = 1 @ 2\n}\n")
    assert where(error) == (2, 9) and "`@`" in str(error)


def test_unexpected_end_of_file_points_past_the_last_character():
    error = error_of("model m {\n  a =\n\n")
    assert where(error) == (2, 6) and "expected a value" in str(error)


@pytest.mark.parametrize("text, position, suggestion", [
    ("modle m {\n}\n", (1, 1), "model"),
    ("model m {\n  blok attn {\n  }\n}\n", (2, 8), "block"),
    ("block a { mixer = lowrank() }\nmodel m {\n  block b extend a {\n  }\n}\n", (3, 11), "extends"),
    ("model m {\n  serch {\n  }\n}\n", (2, 9), "search"),
    ("model m {\n  vocab = 3 padto 16\n}\n", (2, 13), "pad_to"),
    ("model m {\n  search {\n    x in 1 .. 8 stpe 2\n  }\n}\n", (3, 17), "step"),
])
def test_misspelt_keyword_gets_a_did_you_mean(text, position, suggestion):
    error = error_of(text)
    assert where(error) == position
    assert f"did you mean `{suggestion}`?" in hint(error)


def test_misspelt_pattern_gets_a_did_you_mean():
    error = error_of('model m {\n  layers = pattren("SA", S = s, A = a)\n}\n')
    assert where(error) == (2, 12) and "did you mean `pattern`?" in hint(error)


def test_duplicate_block_points_at_the_second():
    error = error_of("model m {\n  block a { mixer = lowrank() }\n  block a { mixer = lowrank() }\n}\n")
    assert where(error) == (3, 9) and "defined twice" in str(error)
    assert "spec.mix:2:9" in hint(error)


def test_model_block_may_not_reuse_a_top_level_block_name():
    error = error_of("block a { mixer = lowrank() }\nmodel m {\n  block a { mixer = monarch() }\n}\n")
    assert where(error) == (3, 9)


def test_duplicate_model_points_at_the_second():
    error = error_of("model m {\n}\nmodel m {\n}\n")
    assert where(error) == (3, 7)


@pytest.mark.parametrize("text, position", [
    ("model m {\n  a = 1\n  a = 2\n}\n", (3, 3)),
    ("model m {\n  a = f()\n  a.b = 2\n}\n", (3, 5)),
    ("model m {\n  vocab = 3 pad_to 8\n  vocab_pad_to = 16\n}\n", (3, 3)),
    ("model m {\n  a = f(x = 1, x = 2)\n}\n", (2, 16)),
    ("model m {\n  search {\n    a in {1}\n    a in {2}\n  }\n}\n", (4, 5)),
])
def test_duplicate_key_points_at_the_second(text, position):
    assert where(error_of(text)) == position


def test_unknown_pattern_letter_points_at_the_letter_and_lists_the_legend():
    error = error_of('model m {\n  layers = pattern("SSXA" * 6, S = ssm, A = attn)\n}\n')
    assert where(error) == (2, 23)
    assert "`X`" in str(error) and "S = ssm, A = attn" in hint(error)


def test_unknown_pattern_letter_after_an_escape_points_at_the_letter():
    error = error_of('model m {\n  layers = pattern("\\SX", S = ssm)\n}\n')
    assert where(error) == (2, 23)  # the escaped S, `\S`, takes columns 21 and 22


@pytest.mark.parametrize("role, text, position", [
    ("block", "model m {\n  block class {\n  }\n}\n", (2, 9)),
    ("model", "model def {\n}\n", (1, 7)),
    ("key", "model m {\n  import = 3\n}\n", (2, 3)),
    ("parameter", "model m {\n  a = f(lambda = 1)\n}\n", (2, 9)),
])
def test_python_keyword_as_a_name_is_refused(role, text, position):
    error = error_of(text)
    assert where(error) == position
    assert f"Python keyword and cannot name a {role}" in str(error)


@pytest.mark.parametrize("text, message", [
    ("", "no model"),
    ("# only a comment\n", "no model"),
    ("block a { mixer = lowrank() }\n", "no model"),
])
def test_a_file_without_a_model_is_an_error(text, message):
    assert message in str(error_of(text))


@pytest.mark.parametrize("value, message", [
    ("2Kb", "unknown unit `Kb`"),
    ("1e999", "too large"),
    ("ssd * 3", "`*` repeats a list"),
    ("[a] * 1.5", "whole number"),
    ("[a] * 100000000000", "at most"),
    ("[a] + b", "`+` joins two lists"),
    ("f(1)", "only `name = value` arguments"),
    ("f(kind = 1)", "`kind` is given twice"),
    ("ratio(a : b = 1 : 0)", "positive whole number"),
    ("ratio(a : b = 1 : 2 : 3)", "2 blocks but gives 3 shares"),
    ("ratio(a : b = 1 : 3, depth = 4) * 24", "depth is given twice"),
    ("ratio(a : b = 1 : 3, plcement = even)", "no parameter `plcement`"),
    ("pattern(S = s)", "one string"),
    ('pattern("S", SS = s)', "one letter"),
    ("[" * 80 + "]" * 80, "nest too deeply"),
])
def test_bad_values_are_spec_errors(value, message):
    assert message in str(error_of(f"model m {{\n  x = {value}\n}}\n"))


def test_sections_in_the_wrong_place_are_refused():
    assert "cannot hold a `search`" in str(error_of("model m {\n  block b {\n    search {\n    }\n  }\n}\n"))
    assert "`blocks` cannot be set" in str(error_of("model m {\n  blocks = 3\n}\n"))
    assert "`search` is set twice" in str(error_of("model m {\n  search {\n  }\n  search {\n  }\n}\n"))


def test_include_cycle_is_reported_at_the_include(tmp_path):
    (tmp_path / "a.mix").write_text('include "b.mix"\nmodel m {\n}\n')
    (tmp_path / "b.mix").write_text('\ninclude "a.mix"\n')
    with pytest.raises(SpecError) as caught:
        parse_file(tmp_path / "a.mix")
    span = caught.value.diagnostics[0].span
    assert (span.file, span.line) == (str(tmp_path / "b.mix"), 2)
    assert "a.mix -> b.mix -> a.mix" in caught.value.diagnostics[0].hint


def test_file_including_itself_is_a_cycle(tmp_path):
    (tmp_path / "a.mix").write_text('include "a.mix"\nmodel m {\n}\n')
    with pytest.raises(SpecError, match="cycle"):
        parse_file(tmp_path / "a.mix")


def test_missing_include_points_at_the_file_name(tmp_path):
    (tmp_path / "a.mix").write_text('model m {\n}\ninclude "nowhere.mix"\n')
    with pytest.raises(SpecError) as caught:
        parse_file(tmp_path / "a.mix")
    assert f"{tmp_path / 'a.mix'}:3:9" in str(caught.value)
    assert "cannot include `nowhere.mix`" in str(caught.value)


def test_syntax_error_in_an_included_file_names_that_file(tmp_path):
    (tmp_path / "common.mix").write_text("block a {\n  mixer lowrank()\n}\n")
    (tmp_path / "a.mix").write_text('include "common.mix"\nmodel m {\n}\n')
    with pytest.raises(SpecError) as caught:
        parse_file(tmp_path / "a.mix")
    assert f"{tmp_path / 'common.mix'}:2:9" in str(caught.value)
    assert "mixer lowrank()" in str(caught.value)  # the included file's line is shown


def test_missing_spec_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        parse_file(tmp_path / "absent.mix")
