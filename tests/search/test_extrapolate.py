"""Found layer patterns carried to deeper and wider models: stack and stretch, checked specs, the CLI."""

import pytest

import composer
from composer.cli import main
from composer.schedule import layer_names
from composer.search.extrapolate import extend, extrapolate

SMALL = """model small {
  d_model = 32
  vocab   = 32
  max_len = 32
  block attn { mixer = attention(heads = 2) }
  block ssd  { mixer = semiseparable(state = 8, head_dim = 16, chunk = 16) }
  layers = [ssd, ssd, attn]
}
"""


def test_stack_repeats_the_pattern_and_stretch_widens_each_layer_into_a_run():
    pattern = ["s", "s", "a"]
    assert extend(pattern, 7, "stack") == ["s", "s", "a", "s", "s", "a", "s"]
    assert extend(pattern, 6, "stretch") == ["s", "s", "s", "s", "a", "a"]
    assert extend(pattern, 2, "stretch") == ["s", "a"]  # shallower: first and last kept
    assert extend(["a", "s", "s", "s"], 10, "stretch")[0] == "a" and extend(pattern, 10, "stretch")[-1] == "a"
    with pytest.raises(ValueError, match="one of stack, stretch"):
        extend(pattern, 4, "tile")


def test_extrapolated_spec_is_checked_and_planned_at_the_new_depth_and_width():
    spec = composer.loads(SMALL)
    big = extrapolate(spec, 12, "stack", d_model=64)
    assert big.name == "small_stack12_d64" and big.d_model == 64 and big.search is None
    assert layer_names(big) == ["ssd", "ssd", "attn"] * 4
    assert composer.plan(big).params > 4 * composer.plan(spec).params  # 4x the layers, twice the width
    with pytest.raises(composer.SpecError, match="heads 2 does not divide d_model 33"):
        extrapolate(spec, 6, "stack", d_model=33)


def test_mixc_extrapolate_writes_a_spec_that_reads_back_and_prints_its_totals(tmp_path, capsys):
    source = tmp_path / "small.mix"
    source.write_text(SMALL)
    assert main(["extrapolate", str(source), "--mode", "stretch", "--depth", "9"]) == 0
    out = capsys.readouterr().out
    written = tmp_path / "small_stretch9.mix"
    assert "ssd×6 attn×3" in out and "parameters" in out and str(written) in out
    assert layer_names(composer.load(written)) == ["ssd"] * 6 + ["attn"] * 3
    assert main(["extrapolate", str(source), "--depth", "0"]) == 2
    assert "--depth must be at least 1" in capsys.readouterr().err
