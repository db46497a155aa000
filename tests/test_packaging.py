"""A non-editable install (`pip install .`, a wheel) holds every package and data file the editable one runs
from: each folder with an __init__.py is listed in pyproject.toml, and each template is matched by package-data."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def folder_of(package: str) -> Path:
    """The folder a dotted package installs from, by package-dir's longest matching prefix."""
    mapping = SETUPTOOLS["package-dir"]
    prefix = max((p for p in mapping if package == p or package.startswith(p + ".")), key=len)
    return ROOT / mapping[prefix] / Path(*package[len(prefix):].strip(".").split(".")) if package != prefix \
        else ROOT / mapping[prefix]


def test_every_package_folder_is_listed():
    listed = set(SETUPTOOLS["packages"])
    for top in SETUPTOOLS["package-dir"]:
        for init in folder_of(top).rglob("__init__.py"):
            relative = init.parent.relative_to(folder_of(top))
            package = ".".join((top, *relative.parts)) if relative.parts else top
            assert package in listed, f"{package} ({init.parent}) is missing from pyproject's packages"


def test_every_template_and_data_file_is_package_data():
    data = SETUPTOOLS["package-data"]
    templates = folder_of("composer.codegen") / "templates"
    for path in templates.rglob("*.jinja"):
        relative = str(path.relative_to(folder_of("composer.codegen")))
        assert any(fnmatch.fnmatch(relative, glob) and "/" not in relative[len(glob.rsplit("/", 1)[0]) + 1:]
                   for glob in data["composer.codegen"]), f"{relative} is not matched by package-data"
