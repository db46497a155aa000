"""The training recipe shared by `mixc train` and every search trial."""

import pytest
import torch

import composer
from composer.search.tasks import MQAR
from composer.search.train import HELD_OUT_SEED_OFFSET, TrainSettings, evaluate, lr_factor, train, train_mqar
from search_specs import TINY_SPEC, PLANNED

TINY = composer.loads(TINY_SPEC.format(settings=PLANNED)).model_copy(update={"search": None})
TASK = MQAR(seq_len=16, pairs=2, vocab=32)


def test_same_seed_trains_to_the_same_loss_and_accuracy():
    settings = TrainSettings(steps=3, batch_size=4, eval_batches=1, seed=5)
    first, again = train(TINY, TASK, settings, device="cpu"), train(TINY, TASK, settings, device="cpu")
    assert (first.loss, first.accuracy) == (again.loss, again.accuracy)
    assert train(TINY, TASK, TrainSettings(steps=3, batch_size=4, eval_batches=1, seed=6), device="cpu").loss \
        != first.loss


def test_bf16_precision_trains_under_autocast():
    """Same seed, same steps: bf16 autocast changes the numbers (so it is on) but still trains."""
    fp32 = train(TINY, TASK, TrainSettings(steps=3, batch_size=4, eval_batches=1, seed=5), device="cpu")
    bf16 = train(TINY, TASK, TrainSettings(steps=3, batch_size=4, eval_batches=1, seed=5, precision="bf16"),
                 device="cpu")
    assert torch.isfinite(torch.tensor(bf16.loss)) and bf16.loss != fp32.loss
    assert bf16.loss == pytest.approx(fp32.loss, rel=0.05)
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        TrainSettings(precision="fp16")


def test_lr_warms_up_linearly_then_decays_to_a_tenth():
    settings = TrainSettings(steps=100, warmup=10)
    factors = [lr_factor(step, settings) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)


def test_held_out_batches_come_from_their_own_stream():
    settings = TrainSettings(batch_size=4, seed=0)
    training = TASK.batch(4, torch.Generator().manual_seed(0))[0]
    held_out = TASK.batch(4, torch.Generator().manual_seed(HELD_OUT_SEED_OFFSET))[0]
    assert not torch.equal(training, held_out)
    model = composer.build(TINY)
    assert evaluate(model, TASK, settings) == evaluate(model, TASK, settings)  # the same batches each call


def test_intermediate_scores_reach_the_callback_every_eval_every_steps():
    seen = []
    train(TINY, TASK, TrainSettings(steps=6, batch_size=4, eval_batches=1, eval_every=2), device="cpu",
          on_eval=lambda step, acc: seen.append((step, 0.0 <= acc <= 1.0)))
    assert seen == [(2, True), (4, True)]  # the last step is the final score, not an intermediate one


def test_result_reports_throughput_and_latency():
    result = train(TINY, TASK, TrainSettings(steps=2, batch_size=4, eval_batches=1), device="cpu")
    assert result.steps == 2 and result.tokens_per_second > 0 and result.latency_ms > 0


def test_train_mqar_rejects_a_task_the_model_cannot_take_with_a_spec_error():
    with pytest.raises(composer.SpecError, match="seq_len >= 4 \\* pairs"):
        train_mqar(TINY, steps=1, seq_len=16, pairs=8)
    with pytest.raises(composer.SpecError, match="exceeds the spec's max_len"):
        train_mqar(TINY, steps=1, seq_len=64)


@pytest.mark.slow
def test_readme_one_minute_run_recalls_well_above_chance():
    """`mixc train examples/tiny_mqar.mix --steps 600` with the CLI's defaults (about 40 s on 2 cores):
    real recall, well above the 1/pairs of copying any value from the context."""
    from pathlib import Path
    spec = composer.load(Path(__file__).parents[2] / "examples" / "tiny_mqar.mix")
    result = train_mqar(spec, steps=600, device="cpu")
    assert result.accuracy > 0.9


def test_a_compiled_step_traces_the_loss_once_and_trains_as_eager(monkeypatch):
    """`compile` puts the step's forward and loss through torch.compile in its mode, once a trial; traced
    (the eager backend, which keeps the test fast) it trains to eager's loss."""
    modes, real_compile = [], torch.compile

    def recording(fn, mode=None, dynamic=None):
        modes.append(mode)
        return real_compile(fn, backend="eager", dynamic=dynamic)
    monkeypatch.setattr(torch, "compile", recording)
    torch._dynamo.reset()
    settings = TrainSettings(steps=3, batch_size=4, eval_batches=1, seed=5)
    eager = train(TINY, TASK, settings, device="cpu")
    compiled = train(TINY, TASK, TrainSettings(steps=3, batch_size=4, eval_batches=1, seed=5,
                                               compile="reduce_overhead"), device="cpu")
    torch._dynamo.reset()
    assert modes == ["reduce-overhead"]
    assert compiled.loss == pytest.approx(eager.loss, rel=1e-5) and compiled.accuracy == eager.accuracy
    with pytest.raises(ValueError, match="compile must be one of none, default, reduce_overhead, max_autotune"):
        TrainSettings(compile="reduce-overhead")


@pytest.mark.slow
def test_inductor_compiled_training_matches_eager():
    """The real compiler (Inductor, CPU): about a minute to compile the tiny model."""
    torch._dynamo.reset()
    settings = TrainSettings(steps=3, batch_size=4, eval_batches=1, seed=5)
    eager = train(TINY, TASK, settings, device="cpu")
    compiled = train(TINY, TASK, TrainSettings(steps=3, batch_size=4, eval_batches=1, seed=5, compile="default"),
                     device="cpu")
    torch._dynamo.reset()
    assert compiled.loss == pytest.approx(eager.loss, rel=1e-5)
