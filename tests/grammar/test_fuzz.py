"""Whatever the text, parsing returns plain data or raises SpecError: nothing else escapes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.grammar.errors import SpecError
from composer.grammar.parser import parse_text

VALID_SPEC = """\
include "common.mix"
block attn {
  mixer   = attention(heads = 4, rope = true)
  channel = swiglu(hidden = 512)
}
model hybrid {
  d_model = 768
  vocab   = 50277 pad_to 16
  norm    = rmsnorm(eps = 1e-5)
  max_len = 2Ki
  block ssm extends attn { mixer = semiseparable(state = 64, decay = data) }
  block x { mixer.window = 256 }
  layers = pattern("SSSA" * 6, S = ssm, A = attn) + [x]
  search {
    ssm.mixer.state in {16, 32, 64}
    d_model in 128 .. 512 step 64
    lr in 1e-4 .. 1e-2 log
    task = mqar(seq_len = 256, pairs = 16)
  }
}
model r { layers = ratio(attn : ssm = 1 : 3, placement = even) * 24 }
"""

# Pieces of the language, so random text reaches past the first token now and then.
FRAGMENTS = ["model", "block", "include", "extends", "search", "pad_to", "in", "step", "log", "true",
             "m", "x", "S", "{", "}", "(", ")", "[", "]", "=", ",", ";", ":", ".", "..", "+", "*", "-",
             "\n", " ", "#", '"', '"SA"', "\\", "1", "2Ki", "1e-5", "0.5", "pattern(", "ratio(", "class",
             '"common.mix"']


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> str:
    """A file name in a folder of its own, so that `include` in random text reads nothing else."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "common.mix").write_text("block shared { mixer = lowrank() }\n")
    return str(folder / "spec.mix")


def parses_or_fails_cleanly(text: str, filename: str) -> None:
    try:
        parsed = parse_text(text, filename)
    except SpecError as error:
        assert str(error)  # rendering the message must not fail either
        return
    json.dumps(parsed.models)  # plain data only
    assert {span.file for span in parsed.source_map.spans.values()} <= set(parsed.source_map.sources)


def test_the_fuzz_seed_is_valid(spec_path):
    assert set(parse_text(VALID_SPEC, spec_path).models) == {"hybrid", "r"}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=40).map("".join))
def test_random_text_never_raises_anything_but_spec_error(spec_path, text):
    parses_or_fails_cleanly(text, spec_path)


EDITS = st.tuples(st.sampled_from(["delete", "insert", "swap", "truncate"]),
                  st.integers(min_value=0, max_value=len(VALID_SPEC)),
                  st.integers(min_value=0, max_value=len(VALID_SPEC)),
                  st.sampled_from(FRAGMENTS) | st.characters())


def apply_edit(text: str, edit: tuple) -> str:
    kind, at, other, inserted = edit
    at, other = min(at, len(text)), min(other, len(text))
    if kind == "delete":
        return text[:at] + text[at + 1:]
    if kind == "insert":
        return text[:at] + inserted + text[at:]
    if kind == "swap" and at < other < len(text):
        return text[:at] + text[other] + text[at + 1:other] + text[at] + text[other + 1:]
    if kind == "truncate":
        return text[:at]
    return text


@settings(max_examples=200, deadline=None)
@given(st.lists(EDITS, min_size=1, max_size=4))
def test_mutated_valid_spec_never_raises_anything_but_spec_error(spec_path, edits):
    text = VALID_SPEC
    for edit in edits:
        text = apply_edit(text, edit)
    parses_or_fails_cleanly(text, spec_path)
