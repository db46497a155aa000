"""The runtime modules a generated model imports, copied into an exported package as flat sibling modules.

Hugging Face's remote-code loader copies a modeling file and the files it imports relatively, one level deep
(`from .name import x` names `name.py` beside it), into its own module cache. So every runtime module of the
compiler becomes one file beside the modeling file, named for its dotted path (`composer.kinds.semiseparable.layer`
-> `kinds_semiseparable_layer.py`), with its imports of other runtime modules made relative. The code is copied as
it is: what `build` runs is what the export runs.

Two kinds of line change on the way:
- a module the compiler renders from templates at run time (`composer.codegen.render`) is replaced by a
  generated one that loads the package's pre-rendered kernels (REPLACED below);
- a line marked `# export: package name` assigns the package's name instead of the compiler's (the custom
  ops' namespace, the user's tunings folder), so an export and the compiler can share one process.

Every copied module may import only the standard library, torch, triton, numpy and other runtime modules; a
module that reaches further (the spec, the planner, pydantic) is an error naming the import, not a broken package.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = "composer"
MARKER = "# export: package name"
# Compiler modules an export replaces with its own generated module of the same interface.
REPLACED = {"composer.codegen.render": "kernel_files"}
THIRD_PARTY = frozenset({"torch", "triton", "numpy"})
_FROM_ROOT = re.compile(r"^(\s*)from (composer(?:\.\w+)*) import ", re.MULTILINE)
_MARKED = re.compile(r'^(\s*[A-Z_][A-Z0-9_]*) = "[^"]*"(\s*' + re.escape(MARKER) + r")$", re.MULTILINE)


class ExportError(ValueError):
    """What keeps a model from being exported, in words that say what to change."""


@dataclass(frozen=True)
class VendoredModule:
    name: str  # the dotted name in the compiler
    file_name: str  # the file in the package
    source: str  # the rewritten text


def flat_name(module: str) -> str:
    """`composer.kinds.semiseparable.layer` -> `kinds_semiseparable_layer` (REPLACED modules: their stand-in)."""
    if module in REPLACED:
        return REPLACED[module]
    parts = module.split(".")
    if parts[0] != ROOT or len(parts) < 2:
        raise ExportError(f"module {module!r} is not one of the compiler's runtime modules")
    return "_".join(parts[1:])


def module_path(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ExportError(f"module {module!r} has no Python source to copy")
    return Path(spec.origin)


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    """(module, line) of every absolute import in a module, also those inside functions."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def _check_import(importer: str, module: str, line: int) -> None:
    top = module.split(".")[0]
    if top == ROOT:
        if "." not in module:
            raise ExportError(f"{importer}, line {line}: `import {module}` would need the whole compiler")
        return
    if top in THIRD_PARTY or top in sys.stdlib_module_names or top == "__future__":
        return
    raise ExportError(f"{importer}, line {line}: imports {module!r}; a runtime module may import only the "
                      f"standard library, {', '.join(sorted(THIRD_PARTY))} and other runtime modules")


def closure(roots: list[str]) -> list[str]:
    """The runtime modules `roots` need, themselves included, in a stable order (REPLACED ones excluded)."""
    seen: dict[str, None] = {}
    todo = list(roots)
    while todo:
        module = todo.pop(0)
        if module in seen or module in REPLACED:
            continue
        seen[module] = None
        path = module_path(module)
        for imported, line in _imports(ast.parse(path.read_text(), str(path))):
            _check_import(module, imported, line)
            if imported.split(".")[0] == ROOT:
                todo.append(imported)
    return sorted(seen)


def rewrite(module: str, source: str, package: str) -> str:
    """A runtime module's text as its package copy: runtime imports relative, marked names the package's."""
    text = _FROM_ROOT.sub(lambda m: f"{m.group(1)}from .{flat_name(m.group(2))} import ", source)
    text = _MARKED.sub(lambda m: f'{m.group(1)} = "{package}"{m.group(2)}', text)
    for number, line in enumerate(text.splitlines(), 1):
        if ROOT in line:
            raise ExportError(f"{module}, line {number}: still names {ROOT!r} after the rewrite: {line.strip()!r}; "
                              f"a runtime module's text must not (mark an assignment with `{MARKER}`)")
    return text


def vendor(roots: list[str], package: str) -> list[VendoredModule]:
    """The package copies of `roots` and every runtime module they import."""
    return [VendoredModule(module, flat_name(module) + ".py", rewrite(module, module_path(module).read_text(),
                                                                      package))
            for module in closure(roots)]


def data_files(modules: list[VendoredModule]) -> dict[str, Path]:
    """Data files beside the copied modules that they read (`Path(__file__).with_name(...)`): name -> source."""
    found = {}
    for module in modules:
        for name in re.findall(r'Path\(__file__\)\.with_name\("([\w.]+)"\)', module.source):
            found[name] = module_path(module.name).with_name(name)
    return found
