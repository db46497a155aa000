"""The delta kind (DeltaNet, Gated DeltaNet) through every stage: its derived sizes, its located checks, its
planned costs against the built module, and its decoding cache."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import composer
from composer.kernels.delta.plan import DeltaSizes, plan_delta
from composer.kernels.plan import Target
from composer.cli import main
from composer.grammar.errors import SpecError
from composer.kinds import kind_of
from composer.resolve import resolve
from composer.search.tasks import IGNORE, MQAR

SPEC = """model d {{
  d_model = 32
  vocab   = 40
  max_len = 64
  dtype   = fp32
  block lin {{
    mixer   = {mixer}
    channel = swiglu(hidden = 64)
  }}
  layers = [lin] * 2
}}
"""


def spec_with(mixer: str):
    return composer.loads(SPEC.format(mixer=mixer), "d.mix")


def test_heads_key_heads_and_key_dim_are_derived():
    m = resolve(spec_with("delta(head_dim = 8)")).blocks["lin"].mixer
    assert (m.heads, m.key_heads, m.key_dim) == (4, 4, 8)
    m = resolve(spec_with("delta(head_dim = 16, heads = 6, key_heads = 3, key_dim = 8)")).blocks["lin"].mixer
    assert (m.heads, m.key_heads, m.key_dim) == (6, 3, 8)
    assert kind_of(m).layer_type(m) == "linear_attention"


@pytest.mark.parametrize("mixer", [
    "delta(head_dim = 16, heads = 4, key_dim = 8, key_heads = 2, chunk = 16)",
    "delta(head_dim = 8, gate = false, beta = sigmoid2, conv = 0, out_norm = false, norm = none)",
    "delta(head_dim = 16, heads = 3, key_dim = 32, conv = 2, chunk = 128)",
])
def test_planned_params_and_state_equal_the_built_layer(mixer):
    spec = spec_with(mixer)
    m = resolve(spec).blocks["lin"].mixer
    plan = composer.plan(spec)
    model = composer.build(spec, backend="reference")
    assert plan.params == sum(p.numel() for p in model.parameters())
    channels = 2 * m.key_heads * m.key_dim + m.heads * m.head_dim
    conv = channels * (m.conv - 1) * 4 if m.conv else 0
    assert plan.total("state_bytes") == 2 * (m.heads * m.key_dim * m.head_dim * 4 + conv)
    assert plan.cache_bytes(3, 64) == model.allocate_cache(3, 64).nbytes() == 3 * plan.total("state_bytes")
    assert plan.layers[0].decode_flops > 0 and plan.layers[0].flops > plan.layers[0].decode_flops


def test_the_gate_costs_its_projection_and_two_parameters_a_head():
    gated = composer.plan(spec_with("delta(head_dim = 8)")).params
    plain = composer.plan(spec_with("delta(head_dim = 8, gate = false)")).params
    assert gated - plain == 2 * (32 * 4 + 2 * 4)  # a_proj, A_log and dt_bias in each of two layers


def error_of(mixer: str):
    with pytest.raises(SpecError) as info:
        spec_with(mixer)
    assert len(info.value.diagnostics) == 1, info.value.render()
    return info.value.diagnostics[0]


def test_key_heads_that_do_not_divide_heads_point_at_key_heads_with_a_fit():
    d = error_of("delta(head_dim = 8, heads = 6, key_heads = 4)")
    assert "key_heads 4 must divide heads 6" in d.message and d.hint.startswith("use key_heads = 3")
    assert (d.span.line, d.span.column) == (7, 58)  # at the value written


def test_a_head_dim_that_does_not_divide_d_model_asks_for_heads():
    d = error_of("delta(head_dim = 24)")
    assert "head_dim 24 does not divide d_model 32" in d.message and "set heads" in d.hint
    assert d.span.line == 7


@pytest.mark.parametrize("mixer, message", [("delta(head_dim = 8, conv = 1)", "conv 1 is a per-channel scale"),
                                            ("delta(head_dim = 8, chunk = 48)", "chunk 48 must be one of"),
                                            ("delta(head_dim = 512)", "less than or equal to 256"),
                                            ("delta(head_dim = 8, beta = relu)", "sigmoid")])
def test_size_errors_are_located(mixer, message):
    d = error_of(mixer)
    assert message in d.message and d.span.line == 7


def test_a_gated_delta_model_generates_with_its_cache():
    torch.manual_seed(0)
    model = composer.build(spec_with("delta(head_dim = 16, heads = 4, key_dim = 8, key_heads = 2, chunk = 16)"),
                           backend="reference").eval()
    prompt = torch.randint(0, 40, (2, 9))
    out = model.generate(prompt, max_new_tokens=5)
    assert out.shape == (2, 14) and torch.equal(out[:, :9], prompt)
    with torch.no_grad():  # greedy: each new token is the argmax of a full forward over what came before
        for i in range(9, 14):
            assert torch.equal(model(out[:, :i])[:, -1].argmax(-1), out[:, i])


EXAMPLE = Path(__file__).parents[2] / "examples" / "qwen3_next_style.mix"


def test_the_qwen3_next_style_example_learns_mqar_in_a_few_steps():
    spec = composer.load(EXAMPLE)
    assert [row.mixer for row in composer.plan(spec).layers] == ["delta"] * 3 + ["attention"] + ["delta"] * 3 + [
        "attention"]
    torch.manual_seed(0)
    model = composer.build(spec, backend="reference")
    task, generator = MQAR(seq_len=32, pairs=4, vocab=spec.vocab, noise=False), torch.Generator().manual_seed(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(24):
        tokens, targets = task.batch(16, generator)
        logits = model(tokens)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(map(math.isfinite, losses)) and sum(losses[-4:]) / 4 < 0.92 * losses[0]


@pytest.mark.parametrize("old, new, message, hint", [
    ("key_heads = 2", "key_heads = 3", "key_heads 3 must divide heads 4", "use key_heads = 2"),
    ("chunk = 64", "chunk = 100", "chunk 100 must be one of 16, 32, 64, 128", "use 64"),
    ("conv = 4", "conv = 1", "conv 1 is a per-channel scale", "use 0 for no short convolution"),
])
def test_mixc_check_points_at_the_example_s_delta_size_errors_with_hints(tmp_path, capsys, old, new, message, hint):
    path = tmp_path / "broken.mix"
    path.write_text(EXAMPLE.read_text().replace(old, new))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:14:" in err and message in err and hint in err and "Traceback" not in err


def test_the_plan_puts_tile_sizes_on_the_generated_kernels_and_says_which_field_keeps_others_off():
    spec = spec_with("delta(head_dim = 16, heads = 4, key_dim = 32, key_heads = 2, chunk = 16)")
    on = composer.plan(spec, Target())  # the interpreter
    assert on.layers[0].kernels.path == "generated"
    gpu = composer.plan(spec, Target("NVIDIA H200", 132)).layers[0].kernels
    assert gpu.path == "generated"
    plain = composer.plan(spec_with("delta(head_dim = 16, key_dim = 32, gate = false, chunk = 16)"),
                          Target("NVIDIA H200", 132)).layers[0].kernels
    assert dict(plain.entry.shared)["GATE"] and not dict(plan_delta(DeltaSizes(32, 16, 16, 1, 1, False)).shared)["GATE"]
    templates = {call.template for call in on.layers[0].kernels.calls}
    assert templates == {"delta_forward.py.jinja", "delta_backward.py.jinja"}  # training: forward and backward
    off = composer.plan(spec_with("delta(head_dim = 8, key_dim = 16, chunk = 16)")).layers[0].kernels
    assert off.path == "reference" and off.field == "head_dim" and "head_dim 8 is not one of" in off.reason
