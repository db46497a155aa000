"""--workers auto: the count from a trial's planned memory against each GPU's free memory, and the cores."""

import composer
from composer.cli import main
from composer.planner import plan
from composer.search.capacity import MAX_WORKERS_PER_GPU, auto_workers, trial_bytes
from composer.search.settings import read_settings
from search_specs import TINY_SPEC, trained, write_spec

GIB = 1 << 30


def test_trial_bytes_counts_weights_optimizer_activations_and_logits():
    spec = composer.loads(TINY_SPEC.format(settings=trained(steps=2)))
    settings = read_settings(spec)
    the_plan, tokens = plan(spec), settings.train.batch_size * settings.task.seq_len
    assert trial_bytes(spec, settings) == 16 * the_plan.params + the_plan.total("act_bytes") * tokens + \
        8 * tokens * spec.padded_vocab


def test_memory_cores_and_the_per_gpu_cap_each_bound_the_count():
    assert auto_workers(25 * GIB, [100 * GIB], cores=64)[0] == 3       # memory: 0.8 x 100 / 25
    assert auto_workers(30 * GIB, [100 * GIB], cores=64)[0] == 2
    assert auto_workers(1 * GIB, [100 * GIB], cores=64)[0] == MAX_WORKERS_PER_GPU  # the cap
    assert auto_workers(1 * GIB, [100 * GIB], cores=6)[0] == 3         # the cores: two a worker
    assert auto_workers(1 * GIB, [100 * GIB, 100 * GIB], cores=64)[0] == 2 * MAX_WORKERS_PER_GPU
    assert auto_workers(200 * GIB, [100 * GIB], cores=64)[0] == 1      # never none
    count, why = auto_workers(25 * GIB, [100 * GIB], cores=64)
    assert why == "3: 25 GiB planned a trial against 100 GiB free on 1 GPU (at most 4 a GPU), and 64 cores (2 a worker)"
    assert auto_workers(1, [], cores=5) == (2, "2 on 5 cores (2 a worker)")  # a CPU: the cores alone


def test_mixc_search_workers_auto_says_how_many_and_reports_trials_an_hour(tmp_path, capsys):
    spec = write_spec(tmp_path, trained(steps=2))
    assert main(["search", str(spec), "--trials", "2", "--workers", "auto", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "--workers auto: " in out and " cores (2 a worker)" in out
    assert "this run's workers ran 2 trials in " in out and " trials an hour with " in out
