"""Two `mixc search` workers share one study on a real PostgreSQL server; one is killed mid-trial.

The server is started here, from the PostgreSQL binaries (Debian's `postgresql` package, which
.ci/run installs): a throw-away data directory, listening on 127.0.0.1 only, on a free port.
PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import composer
from composer.search.settings import read_settings
from composer.search.study import StudyConfig, counted_trials, create_study
from search_specs import trained, write_spec

TRIALS = 6


def _server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--"] + command if os.geteuid() == 0 else command


@pytest.fixture
def postgres_url():
    server_bin = _server_bin()
    if server_bin is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    # Not under pytest's tmp_path: that sits in a root-only directory the server user cannot enter.
    home = Path(tempfile.mkdtemp(prefix="composer-pg-"))
    data, log = home / "data", home / "server.log"
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
    port = _free_port()
    subprocess.run(_as_server_user([str(server_bin / "initdb"), "-D", str(data), "-U", "composer",
                                    "--auth=trust", "--no-sync"]), check=True, capture_output=True)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {home} -c fsync=off"
    subprocess.run(_as_server_user([str(server_bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log),
                                    "-w", "start"]), check=True, capture_output=True)
    try:
        import psycopg2
        connection = psycopg2.connect(host="127.0.0.1", port=port, user="composer", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE search")
        connection.close()
        yield f"postgresql+psycopg2://composer@127.0.0.1:{port}/search"
    finally:
        subprocess.run(_as_server_user([str(server_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _worker(spec: Path, url: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "composer.cli", "search", str(spec), "--resume",
                             "--storage", url, "--heartbeat", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_worker_loses_and_duplicates_no_trial(tmp_path, postgres_url):
    spec = write_spec(tmp_path, trained(steps=120))
    settings = read_settings(composer.load(spec))
    study = create_study(StudyConfig(postgres_url, "tiny", heartbeat_s=1.0), settings)
    study.fill_queue(TRIALS)

    doomed, survivor = _worker(spec, postgres_url), _worker(spec, postgres_url)
    deadline = time.monotonic() + 120
    while not any(t.state == TrialState.RUNNING and t.user_attrs.get("worker", "").endswith(f":{doomed.pid}")
                  for t in study.trials()):
        assert time.monotonic() < deadline and doomed.poll() is None, "the doomed worker never took a trial"
        time.sleep(0.1)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    output, _ = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, output

    trials = optuna.load_study(study_name="tiny", storage=postgres_url).trials
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert len(lost) == 1 and "no heartbeat" in lost[0].user_attrs["lost"]
    assert lost[0].user_attrs["worker"].endswith(f":{doomed.pid}")
    retry = [t for t in trials if t.user_attrs.get("retry_of") == lost[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    # Killed before, while or after suggesting: what the lost trial recorded, the retry repeats.
    assert lost[0].params.items() <= retry[0].params.items()
    counted = counted_trials(trials)
    assert len(counted) == TRIALS and all(t.state == TrialState.COMPLETE for t in counted)
    assert len(trials) == TRIALS + 1  # the six, and the lost one its retry replaced: nothing twice


def test_two_processes_fill_one_postgres_study_exactly_once(tmp_path, postgres_url):
    from test_search_concurrent import assert_filled_once
    assert_filled_once(write_spec(tmp_path), postgres_url)
