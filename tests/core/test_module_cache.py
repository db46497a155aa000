"""The module cache runs only the text this process rendered: planted bytecode, symlinks and foreign folders do nothing."""

import importlib.util
import os
import stat
import sys
from importlib import _bootstrap_external

import pytest

from composer.codegen.cache import CacheError, cache_dir, load_source, source_hash

SOURCE = "VALUE = 'rendered'\n"
EVIL = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\nVALUE = 'planted'\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSER_CACHE", str(tmp_path / "cache"))
    yield tmp_path / "cache"
    for name in [n for n in sys.modules if n.startswith("cachetest_")]:
        del sys.modules[name]


def _path(prefix: str, source: str = SOURCE):
    return cache_dir() / f"{prefix}_{source_hash(source)}.py"


def test_folders_and_files_are_private(cache):
    assert load_source(SOURCE, "cachetest_private").VALUE == "rendered"
    for folder in (cache, cache / "modules"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(_path("cachetest_private")).st_mode) == 0o600
    assert not (cache / "modules" / "__pycache__").exists()  # no bytecode written either


def test_planted_bytecode_never_runs(cache, tmp_path):
    marker = tmp_path / "marker"
    load_source(SOURCE, "cachetest_warm")  # the folder and a verified file exist, as after an earlier run
    path = _path("cachetest_pyc")
    path.write_text(SOURCE)
    os.chmod(path, 0o600)
    info = os.stat(path)
    # Bytecode whose header matches the verified .py exactly: what Python's import would trust.
    code = compile(EVIL.format(marker=str(marker)), str(path), "exec")
    pyc = importlib.util.cache_from_source(str(path))
    os.makedirs(os.path.dirname(pyc), exist_ok=True)
    with open(pyc, "wb") as file:
        file.write(_bootstrap_external._code_to_timestamp_pyc(code, info.st_mtime, info.st_size))
    assert load_source(SOURCE, "cachetest_pyc").VALUE == "rendered"
    assert not marker.exists()


def test_a_symlink_at_the_file_or_a_temporary_name_is_not_written_through(cache, tmp_path):
    load_source(SOURCE, "cachetest_warm")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = _path("cachetest_link")
    path.symlink_to(victim)
    for pid in range(os.getpid() - 2, os.getpid() + 3):  # the temporary names a predictable scheme would use
        path.with_suffix(f".tmp{pid}").symlink_to(victim)
    assert load_source(SOURCE, "cachetest_link").VALUE == "rendered"
    assert victim.read_text() == "precious"
    assert not path.is_symlink() and path.read_text() == SOURCE


def test_a_file_swapped_for_other_code_is_rewritten_and_the_rendered_text_runs(cache, tmp_path):
    marker = tmp_path / "marker"
    load_source(SOURCE, "cachetest_warm")
    path = _path("cachetest_swap")
    path.write_text(EVIL.format(marker=str(marker)))
    os.chmod(path, 0o600)
    assert load_source(SOURCE, "cachetest_swap").VALUE == "rendered"
    assert not marker.exists() and path.read_text() == SOURCE


def test_a_cache_writable_by_others_is_refused(cache):
    cache.mkdir(mode=0o777)
    os.chmod(cache, 0o777)
    with pytest.raises(CacheError, match="writable by other users"):
        load_source(SOURCE, "cachetest_shared")


def test_a_cache_of_another_user_is_refused(cache):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a folder another user owns")
    cache.mkdir(mode=0o700)
    os.chown(cache, 65534, 65534)
    with pytest.raises(CacheError, match="belongs to another user"):
        load_source(SOURCE, "cachetest_foreign")


def test_a_symlinked_cache_folder_is_refused(cache, tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    cache.mkdir(mode=0o700)
    (cache / "modules").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CacheError, match="not a plain folder"):
        load_source(SOURCE, "cachetest_symlinked")
