"""The repository describes measurements by GPU, date and commit, never by the development session that made them.

A session number means nothing to a reader who was not there; a commit can be checked out and a result file opened.
Only numbered or narrative references are matched, so words such as an ORM's or Optuna's storage session pass.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# a numbered reference, in prose or a file name (examples in NARRATION below)
NUMBERED = re.compile(r"(?i)(?<![a-z])sessions?[ _-]?\d+")
# a narrative one: "this", "next", "earlier" ... before the word, or its plural or possessive
NARRATIVE = re.compile(
    r"(?i)\b(?:this|next|previous|earlier|later|last|that)(?: (?:gpu|device|development))? sessions?\b"
    r"|\bsessions' |\bthe session's\b"
)


def tracked_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [name for name in listed.stdout.decode().split("\0") if name]


def session_references(name: str) -> list[str]:
    found = [f"{name}: file name" for _ in NUMBERED.finditer(name)]
    path = ROOT / name
    if not path.is_file():
        return found
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return found
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if NUMBERED.search(line) or NARRATIVE.search(line):
            found.append(f"{name}:{number}: {line.strip()[:160]}")
    return found


def test_no_text_names_a_development_session():
    found = [reference for name in tracked_files() for reference in session_references(name)]
    assert not found, "name results by GPU, date and commit, not by session:\n" + "\n".join(found)


# Built from two halves so that this file's own lines stay clean.
NARRATION = ["{} 9's table", "{}s 8 and 9", "a {}-7 call", "x_{}10_ab.log", "measured this {}", "earlier {}s' logs",
             "the {}'s device time", "the next GPU {}"]


@pytest.mark.parametrize("text", [example.format("sess" + "ion") for example in NARRATION])
def test_session_narration_is_caught(text):
    assert NUMBERED.search(text) or NARRATIVE.search(text)


@pytest.mark.parametrize("text", ["Session = sessionmaker(bind=engine)", "with Session(engine) as session:",
                                  "optuna.storages.RDBStorage keeps a scoped session", "session.commit()",
                                  "a persistent HTTP session per worker"])
def test_ordinary_uses_of_session_pass(text):
    assert not NUMBERED.search(text) and not NARRATIVE.search(text)
