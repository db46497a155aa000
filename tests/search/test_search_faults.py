"""Storage faults and interrupts in `mixc search`, and the CLI's exit codes: composer's own short errors."""

import os
import signal
import subprocess
import sys
import time

from composer import cli
from composer.cli import main
from search_specs import write_spec


def test_a_corrupt_study_file_is_a_study_error(tmp_path, capsys):
    spec = write_spec(tmp_path)
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a SQLite database at all" * 100)
    assert main(["search", str(spec), "--storage", str(broken), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot use the study storage" in err and "Traceback" not in err


def test_a_storage_folder_that_cannot_be_made_is_a_study_error(tmp_path, capsys):
    spec = write_spec(tmp_path)
    (tmp_path / "a_file").write_text("")
    assert main(["search", str(spec), "--storage", str(tmp_path / "a_file" / "study.db"), "--trials", "1"]) == 2
    assert "cannot use the study storage" in capsys.readouterr().err


def test_an_unreachable_database_is_a_study_error(tmp_path, capsys):
    spec = write_spec(tmp_path)
    url = "postgresql+psycopg2://nobody@127.0.0.1:1/none"
    assert main(["search", str(spec), "--storage", url, "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot use the study storage" in err and "Traceback" not in err


def test_an_internal_error_is_one_line_and_a_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COMPOSER_CACHE", str(tmp_path / "cache"))

    def broken(args):
        raise RuntimeError("something inside went wrong\nsecond line")

    monkeypatch.setattr(cli, "cmd_schema", broken)
    assert main(["schema"]) == 1
    err = capsys.readouterr().err
    assert "internal error (RuntimeError: something inside went wrong)" in err and "Traceback" not in err
    log = next((tmp_path / "cache" / "logs").glob("mixc-*.log"))
    assert "Traceback" in log.read_text() and "second line" in log.read_text()


def test_an_interrupt_exits_130_quietly(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_schema", interrupted)
    assert main(["schema"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_ctrl_c_while_workers_start_exits_130_without_a_traceback(tmp_path):
    spec = write_spec(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "composer.cli", "search", str(spec), "--trials", "4",
                                "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = ""
    deadline = time.monotonic() + 120
    while "queued now" not in output:  # the workers start right after this line
        assert time.monotonic() < deadline and process.poll() is None, output
        output += process.stdout.readline()
    time.sleep(0.3)  # inside the workers' imports
    os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    rest, _ = process.communicate(timeout=120)
    output += rest
    assert process.returncode in (0, 130), output  # 0 only when the trials were done before the signal landed
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
