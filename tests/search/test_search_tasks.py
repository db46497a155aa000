"""The synthetic tasks: each batch holds what its paper's definition says, and settings are checked."""

import itertools

import pytest
import torch

from composer.search.tasks import (IGNORE, MQAR, Induction, Permutation, SelectiveCopy, TaskError, accuracy,
                                   make_task)


def _batch(task, size=16, seed=0):
    return task.batch(size, torch.Generator().manual_seed(seed))


def test_mqar_answer_is_the_value_paired_with_the_queried_key():
    task = MQAR(seq_len=64, pairs=8, vocab=128)
    inputs, targets = _batch(task)
    for row in range(len(inputs)):
        context = inputs[row, :16].tolist()
        pairs = dict(zip(context[0::2], context[1::2]))
        queries = (targets[row] != IGNORE).nonzero().flatten().tolist()
        assert len(queries) == 8
        assert {inputs[row, q].item() for q in queries} == set(pairs)
        for q in queries:
            assert targets[row, q].item() == pairs[inputs[row, q].item()]


def test_mqar_keys_and_values_are_distinct_and_from_their_halves():
    inputs, _ = _batch(MQAR(seq_len=64, pairs=8, vocab=128))
    keys, values = inputs[:, 0:16:2], inputs[:, 1:16:2]
    assert ((keys >= 1) & (keys < 64)).all() and ((values >= 64) & (values < 128)).all()
    for row in range(len(inputs)):
        assert len(set(keys[row].tolist())) == 8 and len(set(values[row].tolist())) == 8


def test_mqar_queries_sit_at_even_offsets_mostly_close_to_the_context():
    task = MQAR(seq_len=256, pairs=16, vocab=128)
    _, targets = _batch(task, size=64)
    offsets = (targets != IGNORE).nonzero()[:, 1] - 32
    assert (offsets % 2 == 0).all() and (offsets >= 0).all()
    # Zoology's power law: the gaps pile up near the context, the median well inside the query region.
    assert offsets.float().median() < (256 - 32) / 4


def test_mqar_without_noise_fills_the_gaps_with_token_zero():
    inputs, targets = _batch(MQAR(seq_len=32, pairs=4, vocab=32, noise=False))
    gaps = (targets == IGNORE)
    gaps[:, :8] = False
    assert (inputs[gaps] == 0).all()


@pytest.mark.parametrize("task", [MQAR(), SelectiveCopy(), Induction(), Permutation()], ids=lambda t: t.kind)
def test_same_seed_gives_the_same_batches_and_another_seed_others(task):
    first, again, other = _batch(task, seed=1), _batch(task, seed=1), _batch(task, seed=2)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_selective_copy_answers_the_data_tokens_in_order_at_the_markers():
    inputs, targets = _batch(SelectiveCopy(seq_len=32, tokens=4, vocab=16))
    for row in range(len(inputs)):
        body = inputs[row, :28]
        data = body[body >= 2].tolist()
        assert inputs[row, 28:].tolist() == [1] * 4
        assert targets[row, 28:].tolist() == data
        assert (targets[row, :28] == IGNORE).all()


def test_induction_answer_is_the_token_after_the_first_trigger():
    inputs, targets = _batch(Induction(seq_len=32, vocab=16))
    for row in range(len(inputs)):
        triggers = (inputs[row] == 1).nonzero().flatten().tolist()
        assert len(triggers) == 2 and triggers[1] == 31
        assert targets[row, -1].item() == inputs[row, triggers[0] + 1].item()
        assert (targets[row, :-1] == IGNORE).all()


def test_permutation_of_degree_two_is_running_parity():
    inputs, targets = _batch(Permutation(seq_len=24, degree=2))
    assert torch.equal(targets, inputs.cumsum(dim=1) % 2)


def test_permutation_answers_compose_every_prefix():
    task = Permutation(seq_len=12, degree=3)
    perms = list(itertools.permutations(range(3)))
    inputs, targets = _batch(task, size=4)
    for row in range(4):
        state = tuple(range(3))
        for t in range(12):
            step = perms[inputs[row, t]]
            state = tuple(state[i] for i in step)
            assert perms[targets[row, t]] == state


def test_accuracy_counts_only_answer_positions():
    targets = torch.tensor([[IGNORE, 3, IGNORE, 5]])
    logits = torch.zeros(1, 4, 8)
    logits[0, 1, 3] = 1.0  # right
    logits[0, 3, 2] = 1.0  # wrong
    logits[0, 0, 7] = 1.0  # not an answer position
    assert accuracy(logits, targets) == 0.5


@pytest.mark.parametrize("settings, field, words", [
    ({"kind": "mqr"}, None, "did you mean `mqar`?"),
    ({"kind": "mqar", "pair": 4}, "pair", "did you mean `pairs`?"),
    ({"kind": "mqar", "pairs": 2.5}, "pairs", "must be a whole number"),
    ({"kind": "mqar", "noise": 1}, "noise", "must be true or false"),
    ({"kind": "mqar", "seq_len": 64, "pairs": 20}, "pairs", "seq_len >= 4 * pairs"),
    ({"kind": "mqar", "vocab": 256}, "vocab", "model's vocab is 128"),
    ({"kind": "mqar", "seq_len": 512}, "seq_len", "longer than the model's max_len 256"),
    ({"kind": "permutation", "degree": 9}, "degree", "from 2 to 6"),
    (42, None, "written as a call"),
])
def test_bad_task_settings_say_which_setting_and_why(settings, field, words):
    with pytest.raises(TaskError) as caught:
        make_task(settings, model_vocab=128, max_len=256)
    assert caught.value.field == field
    assert words in str(caught.value) + str(caught.value.hint)


def test_mqar_vocab_defaults_to_the_models_and_others_keep_their_own():
    assert make_task("mqar", model_vocab=96, max_len=64).vocab == 96
    assert make_task("induction", model_vocab=96, max_len=64).vocab == 16
    assert make_task({"kind": "permutation", "degree": 4}, model_vocab=96, max_len=64).vocab == 24


@pytest.mark.parametrize("every_row", [False, True], ids=["rows_of_each_kind", "every_row_as_on_a_gpu"])
def test_a_mixed_mqar_batch_holds_every_length_each_a_whole_example_then_padding(every_row):
    task = MQAR(seq_len=128, pairs=16, vocab=256, mixed=True)
    assert task.configurations() == [(32, 4), (64, 8), (128, 16)]
    inputs, targets = task._mixed_batch(96, torch.Generator().manual_seed(0), every_row=every_row)
    lengths = []
    for row in range(len(inputs)):
        queries = (targets[row] != IGNORE).nonzero().flatten()
        pairs = len(queries)
        length = dict((p, l) for l, p in task.configurations())[pairs]  # the pairs name the kind of example
        lengths.append(length)
        assert queries.max() < length and (inputs[row, length:] == 0).all()  # padded after its end, no targets
        context = inputs[row, :2 * pairs].tolist()
        values = dict(zip(context[0::2], context[1::2]))
        assert len(values) == pairs
        for q in queries.tolist():
            assert targets[row, q].item() == values[inputs[row, q].item()]
    assert set(lengths) == {32, 64, 128}  # all three kinds in one batch of 96


def test_a_mixed_mqar_too_short_for_its_quarter_says_how_long_it_must_be():
    with pytest.raises(TaskError, match=r"examples of 11 tokens \(seq_len 44 x 0.25\) hold 2 pairs") as caught:
        MQAR(seq_len=44, pairs=11, vocab=64, mixed=True)
    assert caught.value.hint == "use a seq_len that is a multiple of 8"
    assert MQAR(seq_len=44, pairs=11, vocab=64).configurations() == [(44, 11)]
