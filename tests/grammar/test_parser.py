"""The spec language parses to exactly the plain data of the typed Spec, with spans."""

from __future__ import annotations

import textwrap

import pytest

from composer.grammar.errors import Span
from composer.grammar.parser import SourceMap, parse_file, parse_text

MAMBA = textwrap.dedent("""\
    # mirrors the published Mamba-2 130M
    model mamba2_130m {
      d_model = 768
      vocab   = 50277 pad_to 16
      norm    = rmsnorm(eps = 1e-5)
      tie_embeddings = true
      max_len = 2Ki
      dtype   = bf16

      block ssd {
        mixer   = semiseparable(state = 128, head_dim = 64, expand = 2, groups = 1,
                                chunk = 256, conv = 4, decay = data)
        channel = none
      }
      layers = [ssd] * 24
    }
""")


def model_of(text: str) -> dict:
    """The data of the only model in `text`."""
    (data,) = parse_text(text, "spec.mix").models.values()
    return data


def value_of(value_text: str):
    """What one value parses to, written as `x = <value_text>` in a model."""
    return model_of(f"model m {{\n  x = {value_text}\n}}\n")["x"]


def test_mamba_example_parses_to_the_contract_data():
    assert model_of(MAMBA) == {
        "name": "mamba2_130m",
        "d_model": 768, "vocab": 50277, "vocab_pad_to": 16,
        "norm": {"kind": "rmsnorm", "eps": 1e-05},
        "tie_embeddings": True, "max_len": 2048, "dtype": "bf16",
        "blocks": {
            "ssd": {"mixer": {"kind": "semiseparable", "state": 128, "head_dim": 64, "expand": 2, "groups": 1,
                              "chunk": 256, "conv": 4, "decay": "data"},
                    "channel": "none"},
        },
        "layers": ["ssd"] * 24,
    }


@pytest.mark.parametrize("written, expected", [
    ("768", 768), ("-3", -3), ("0.5", 0.5), ("1e-5", 1e-5), ("1E3", 1000.0),
    ("2Ki", 2048), ("1.5k", 1500), ("2M", 2_000_000), ("3B", 3_000_000_000),
    ("1Mi", 1024**2), ("1Gi", 1024**3), ("0.5Ki", 512), ("1.3Ki", 1331.2), ("-2k", -2000),
])
def test_numbers_and_units(written, expected):
    value = value_of(written)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("written, expected", [
    ("true", True), ("false", False), ("data", "data"), ("none", "none"),
    ('"common.mix"', "common.mix"), (r'"say \"hi\" \\ bye"', 'say "hi" \\ bye'),
    ('[a, 1, "s"]', ["a", 1, "s"]), ("[]", []), ("[1, 2,]", [1, 2]),
])
def test_scalars_names_strings_and_lists(written, expected):
    assert value_of(written) == expected


@pytest.mark.parametrize("written, expected", [
    ("[a] * 3", ["a", "a", "a"]),
    ("3 * [a]", ["a", "a", "a"]),
    ("[a, b] * 2 + [c]", ["a", "b", "a", "b", "c"]),
    ("([a] + [b]) * 2", ["a", "b", "a", "b"]),
    ('"ab" * 2 + "c"', "ababc"),
    ("[a] * 0", []),
])
def test_repetition_and_concatenation_are_evaluated(written, expected):
    assert value_of(written) == expected


def test_calls_become_kind_dicts():
    assert value_of("attention(heads = 4, rope = true)") == {"kind": "attention", "heads": 4, "rope": True}
    assert value_of("rmsnorm()") == {"kind": "rmsnorm"}
    assert value_of("f(inner = g(k = [1, 2]),)") == {"kind": "f", "inner": {"kind": "g", "k": [1, 2]}}


def test_arguments_may_span_lines_and_entries_may_use_semicolons():
    data = model_of(textwrap.dedent("""\
        model m {
          a = f(
            x = 1,   # a comment inside the call
            y = [1,
                 2],
          )
          b = 1; c = 2;;
        }
    """))
    assert data == {"name": "m", "a": {"kind": "f", "x": 1, "y": [1, 2]}, "b": 1, "c": 2, "blocks": {}}


def test_windows_line_endings_parse():
    assert model_of("model m {\r\n  a = 1\r\n}\r\n")["a"] == 1


def test_pad_to_adds_a_pad_to_key():
    data = model_of("model m {\n  vocab = 50277 pad_to 16\n  head.width = 10 pad_to 8\n}")
    assert data["vocab"] == 50277 and data["vocab_pad_to"] == 16
    assert data["head"] == {"width": 10, "width_pad_to": 8}


def test_dotted_keys_nest_and_merge():
    data = model_of("model m {\n  block x {\n    mixer.window = 256\n    mixer.heads = 2\n  }\n}")
    assert data["blocks"]["x"] == {"mixer": {"window": 256, "heads": 2}}


def test_extends_is_kept_as_data():
    data = model_of(textwrap.dedent("""\
        model m {
          block attn { mixer = attention(heads = 4) }
          block attn2 extends attn { window = 512 }
          block ssm extends attn { mixer = semiseparable(state = 64) }
        }
    """))
    assert data["blocks"]["attn2"] == {"extends": "attn", "window": 512}
    assert data["blocks"]["ssm"] == {"extends": "attn", "mixer": {"kind": "semiseparable", "state": 64}}


def test_list_schedule_expands_to_block_names():
    data = model_of("model m {\n  layers = [ssd, ssd, ssd, attn] * 2 + [attn]\n}")
    assert data["layers"] == ["ssd", "ssd", "ssd", "attn"] * 2 + ["attn"]


def test_pattern_expands_letters_through_the_legend():
    data = model_of('model m {\n  layers = pattern("SSSA" * 2, S = ssm, A = attn)\n}')
    assert data["layers"] == ["ssm", "ssm", "ssm", "attn"] * 2


def test_pattern_ignores_spaces_between_letter_groups():
    assert value_of('pattern("SA SA", S = ssm, A = attn)') == ["ssm", "attn", "ssm", "attn"]


def test_ratio_with_repetition_sets_depth_and_default_placement():
    assert value_of("ratio(attn : ssm = 1 : 3) * 24") == {
        "ratio": {"attn": 1, "ssm": 3}, "placement": "interleaved", "depth": 24}


def test_ratio_with_depth_argument_and_placement():
    assert value_of("ratio(attn : ssm : mlp = 1 : 3 : 2, placement = even, depth = 24)") == {
        "ratio": {"attn": 1, "ssm": 3, "mlp": 2}, "placement": "even", "depth": 24}


def test_ratio_without_depth_leaves_it_none():
    assert value_of("ratio(attn : ssm = 1 : 3, placement = interleaved)")["depth"] is None


def test_search_space_entries_of_each_kind_and_settings():
    data = model_of(textwrap.dedent("""\
        model m {
          search {
            ssm.mixer.state    in {16, 32,
                                   64, 128}
            attention_fraction in 0.0 .. 0.5
            d_model            in 128 .. 512 step 64
            lr                 in 1e-4 .. 1e-2 log
            placement          in {interleaved, front, back, middle, even}
            trials = 64
            task   = mqar(seq_len = 256, pairs = 16)
            max_params = 2M
          }
        }
    """))
    assert data["search"] == {
        "space": [
            {"path": "ssm.mixer.state", "choices": [16, 32, 64, 128]},
            {"path": "attention_fraction", "low": 0.0, "high": 0.5},
            {"path": "d_model", "low": 128, "high": 512, "step": 64},
            {"path": "lr", "low": 0.0001, "high": 0.01, "log": True},
            {"path": "placement", "choices": ["interleaved", "front", "back", "middle", "even"]},
        ],
        "settings": {"trials": 64, "task": {"kind": "mqar", "seq_len": 256, "pairs": 16},
                     "max_params": 2000000},
    }


def test_search_is_absent_when_not_written():
    assert "search" not in model_of(MAMBA)


def test_top_level_blocks_are_shared_by_every_model_and_come_first():
    parsed = parse_text(textwrap.dedent("""\
        block mlp_attn {
          mixer   = attention(heads = 4, rope = true)
          channel = swiglu(hidden = 512)
        }
        model a {
          block own { mixer = attention(heads = 1) }
          layers = [mlp_attn, own]
        }
        model b { layers = [mlp_attn] }
    """))
    shared = {"mixer": {"kind": "attention", "heads": 4, "rope": True},
              "channel": {"kind": "swiglu", "hidden": 512}}
    assert list(parsed.models["a"]["blocks"]) == ["mlp_attn", "own"]
    assert parsed.models["a"]["blocks"]["mlp_attn"] == shared
    assert parsed.models["b"]["blocks"] == {"mlp_attn": shared}


def test_keywords_may_be_used_as_names_where_no_keyword_fits():
    data = model_of("model m {\n  log = 3\n  step = in_\n}")
    assert data["log"] == 3 and data["step"] == "in_"


def test_include_brings_blocks_and_models_relative_to_the_including_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "common.mix").write_text('include "more.mix"\nblock shared { mixer = lowrank() }\n')
    (tmp_path / "lib" / "more.mix").write_text("block deeper { mixer = lowrank() }\nmodel tiny { layers = [deeper] }\n")
    main = tmp_path / "main.mix"
    main.write_text('include "lib/common.mix"\nblock own { mixer = monarch() }\nmodel m { layers = [shared] }\n')
    parsed = parse_file(main)
    assert list(parsed.models) == ["tiny", "m"]
    assert list(parsed.models["m"]["blocks"]) == ["deeper", "shared", "own"]
    assert list(parsed.models["tiny"]["blocks"]) == ["deeper"]
    included = str(tmp_path / "lib" / "common.mix")
    assert parsed.source_map.span_at(("m", "blocks", "shared")) == Span(included, 2, 7, 2, 13)
    assert set(parsed.source_map.sources) == {str(main), included, str(tmp_path / "lib" / "more.mix")}


def test_a_file_included_twice_through_two_paths_is_read_once(tmp_path):
    (tmp_path / "common.mix").write_text("block c { mixer = lowrank() }\n")
    (tmp_path / "a.mix").write_text('include "common.mix"\nblock a { mixer = lowrank() }\n')
    (tmp_path / "b.mix").write_text('include "common.mix"\nblock b { mixer = lowrank() }\n')
    (tmp_path / "main.mix").write_text('include "a.mix"\ninclude "b.mix"\nmodel m { layers = [a, b, c] }\n')
    assert list(parse_file(tmp_path / "main.mix").models["m"]["blocks"]) == ["c", "a", "b"]


def test_parse_text_resolves_includes_next_to_its_filename(tmp_path):
    (tmp_path / "common.mix").write_text("block c { mixer = lowrank() }\n")
    parsed = parse_text('include "common.mix"\nmodel m { layers = [c] }\n', str(tmp_path / "virtual.mix"))
    assert "c" in parsed.models["m"]["blocks"]


# ── spans ────────────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def mamba_spans() -> SourceMap:
    return parse_text(MAMBA, "mamba.mix").source_map


@pytest.mark.parametrize("path, expected", [
    (("mamba2_130m",), Span("mamba.mix", 2, 7, 2, 18)),
    (("mamba2_130m", "d_model"), Span("mamba.mix", 3, 13, 3, 16)),
    (("mamba2_130m", "vocab_pad_to"), Span("mamba.mix", 4, 26, 4, 28)),
    (("mamba2_130m", "norm", "kind"), Span("mamba.mix", 5, 13, 5, 20)),
    (("mamba2_130m", "blocks", "ssd"), Span("mamba.mix", 10, 9, 10, 12)),
    (("mamba2_130m", "blocks", "ssd", "mixer"), Span("mamba.mix", 11, 15, 12, 65)),
    (("mamba2_130m", "blocks", "ssd", "mixer", "kind"), Span("mamba.mix", 11, 15, 11, 28)),
    (("mamba2_130m", "blocks", "ssd", "mixer", "state"), Span("mamba.mix", 11, 37, 11, 40)),
    (("mamba2_130m", "blocks", "ssd", "mixer", "chunk"), Span("mamba.mix", 12, 37, 12, 40)),
    (("mamba2_130m", "layers"), Span("mamba.mix", 15, 12, 15, 22)),
    (("mamba2_130m", "layers", 23), Span("mamba.mix", 15, 13, 15, 16)),
])
def test_spans_point_at_the_value_text(mamba_spans, path, expected):
    assert mamba_spans.spans[path] == expected


def test_span_at_falls_back_to_the_longest_prefix(mamba_spans):
    assert mamba_spans.span_at(("mamba2_130m", "blocks", "ssd", "mixer", "out_norm")) == \
        mamba_spans.spans[("mamba2_130m", "blocks", "ssd", "mixer")]
    assert mamba_spans.span_at(("nobody",)) is None


def test_pattern_layers_point_at_their_letters():
    source_map = parse_text('model m {\n  layers = pattern("SA" * 2, S = s, A = a)\n}').source_map
    assert [source_map.spans[("m", "layers", i)].column for i in range(4)] == [21, 22, 21, 22]


def test_search_entry_spans_cover_the_entry_and_its_path():
    source_map = parse_text("model m {\n  search {\n    d_model in 128 .. 512 step 64\n  }\n}").source_map
    assert source_map.spans[("m", "search", "space", 0)] == Span("<string>", 3, 5, 3, 34)
    assert source_map.spans[("m", "search", "space", 0, "path")] == Span("<string>", 3, 5, 3, 12)
    assert source_map.spans[("m", "search", "space", 0, "step")] == Span("<string>", 3, 32, 3, 34)


def test_ratio_spans_point_at_depth_and_shares():
    source_map = parse_text("model m {\n  layers = ratio(a : b = 1 : 3) * 24\n}").source_map
    assert source_map.spans[("m", "layers", "depth")] == Span("<string>", 2, 35, 2, 37)
    assert source_map.spans[("m", "layers", "ratio", "b")] == Span("<string>", 2, 30, 2, 31)
    assert ("m", "layers", "placement") not in source_map.spans
