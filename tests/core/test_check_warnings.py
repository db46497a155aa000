"""`mixc check` says, at the spec's line, when a layer will run the slow reference on a GPU; --strict fails."""

from composer.cli import main

SPEC = """model m {
  d_model = 64
  vocab = 32
  block ssd { mixer = semiseparable(state = 24, head_dim = 16) }
  block fine { mixer = semiseparable(state = 16, head_dim = 16) }
  layers = [fine, ssd, ssd]
}
"""


def test_check_warns_at_the_size_that_keeps_a_layer_off_the_kernels(tmp_path, capsys):
    path = tmp_path / "m.mix"
    path.write_text(SPEC)
    assert main(["check", str(path)]) == 0
    captured = capsys.readouterr()
    assert f"{path}:4:45: warning: layers 1, 2 (block `ssd`) will run the slow plain-PyTorch reference" in captured.err
    assert "state 24: the generated SSD kernels need powers of two >= 16" in captured.err
    assert "hint: state 16 or 32 would fit" in captured.err
    assert "fine" not in captured.err and "is valid" in captured.out


def test_strict_check_makes_the_reference_path_an_error(tmp_path, capsys):
    path = tmp_path / "m.mix"
    path.write_text(SPEC)
    assert main(["check", "--strict", str(path)]) == 2
    assert ":4:45: error: layers 1, 2 (block `ssd`)" in capsys.readouterr().err
    path.write_text(SPEC.replace("state = 24", "state = 32"))
    assert main(["check", "--strict", str(path)]) == 0


def test_plan_shows_the_path_of_every_block(tmp_path, capsys):
    path = tmp_path / "m.mix"
    path.write_text(SPEC)
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "block fine: generated: " in out
    assert "block ssd: reference: state 24: the generated SSD kernels need powers of two >= 16" in out
