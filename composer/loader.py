"""Load a spec from DSL text, a file (.mix, .json, .yaml) or a dict, with every check.

One path for all sources: plain data -> block inheritance -> pydantic types ->
derived sizes and consistency (`composer.resolve`) -> search holes. Every problem
becomes a `SpecError` pointing at the spec's line and column when the source has
positions (the DSL, JSON and YAML files), or naming the data path when it does not (dicts).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import ValidationError

from composer.blocks import PARTS, drop_inherited, flatten_blocks
from composer.data_positions import source_map_of
from composer.grammar.errors import Diagnostic, Span, SpecError, did_you_mean
from composer.grammar.parser import (ParsedFile, ReadError, SourceMap, parse_file, parse_text, read_text_file,
                                     shown_name)
from composer.limits import expanded_nodes, limit, nesting_depth, raise_hint
from composer.holes import SCHEDULE_HOLES, TRAINING_HOLES, HoleError, assign, hole_paths, layer_hole
from composer.problems import KeyProblem
from composer.resolve import Problem, Problems, resolve
from composer.spec import Block, SearchParam, Spec

DATA_ROOT = "<data>"  # the model's place in a JSON or YAML file's source map: the file holds one spec

Locate = Callable[[tuple], "Span | None"]


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


class _Reporter:
    """Turns data paths into diagnostics with spans (files) or dotted paths (dicts)."""

    def __init__(self, source_map: SourceMap | None, model: str | None, relocated: dict[tuple, tuple]):
        self.source_map, self.model, self.relocated = source_map, model, relocated

    def span(self, path: tuple, key: bool = False) -> Span | None:
        if self.source_map is None:
            return None
        for new, written in self.relocated.items():
            if path[: len(new)] == new:
                path = written + path[len(new):]
                break
        full = (self.model,) + tuple(path)
        return self.source_map.key_span_at(full) if key else self.source_map.span_at(full)

    def diagnostic(self, problem: Problem) -> Diagnostic:
        span = self.span(problem.path, key=isinstance(problem, KeyProblem))
        message = problem.message if span or not problem.path else f"{_dotted(problem.path)}: {problem.message}"
        return Diagnostic(message, span, problem.hint)

    def error(self, problems: list[Problem]) -> SpecError:
        """One diagnostic a place and message: a name written once but repeated by `* n` or
        pattern() is checked at every layer it gives, and would otherwise be reported at each."""
        sources = self.source_map.sources if self.source_map else {}
        diagnostics: dict[tuple, Diagnostic] = {}
        for problem in problems:
            diagnostic = self.diagnostic(problem)
            diagnostics.setdefault((diagnostic.message, diagnostic.span, diagnostic.hint), diagnostic)
        return SpecError(list(diagnostics.values()), dict(sources))


def _data_path(data: Any, loc: tuple) -> tuple:
    """Pydantic's error location without its union tags: the path into the data as written."""
    path, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and (part == node.get("kind") or part in ("list", "ratio")):
            continue  # a discriminator tag, not a key
        elif isinstance(node, (dict, list)) and isinstance(part, str) and ("[" in part or part in ("list", "ratio")):
            continue
        path.append(part)
        node = None if not isinstance(node, (dict, list)) else node
    return tuple(path)


def _owner_fields(data: Any, path: tuple) -> set[str]:
    """Field names allowed where `path` ends: for did-you-mean on an unknown key."""
    parent = data
    for part in path[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
    if len(path) == 1:
        return set(Spec.model_fields)
    if len(path) == 3 and path[0] == "blocks":
        return set(Block.model_fields)
    if isinstance(parent, dict) and len(path) >= 2:
        kinds = PARTS.get(path[-2])
        if kinds and parent.get("kind") in kinds:
            return set(kinds[parent["kind"]].model_fields)
    if path[:1] == ("search",):
        return set(SearchParam.model_fields)
    return set()


def _problem_from_pydantic(error: dict, data: Any) -> Problem:
    path = _data_path(data, error["loc"])
    kind, field = error["type"], (path[-1] if path else "spec")
    if kind == "union_tag_invalid":
        tag, expected = error["ctx"]["tag"], [t.strip(" '") for t in error["ctx"]["expected_tags"].split(",")]
        return Problem(path + ("kind",), f"unknown {field} kind `{tag}`",
                       did_you_mean(tag, expected) or f"expected one of: {', '.join(expected)}")
    if kind == "union_tag_not_found":
        return Problem(path, f"`{field}` needs a kind", "e.g. mixer = attention(heads = 8)")
    if kind == "extra_forbidden":
        owner = _owner_fields(data, path)
        return KeyProblem(path, f"unknown parameter `{field}`",
                          did_you_mean(str(field), owner) or (f"known: {', '.join(sorted(owner))}" if owner else None))
    if kind == "missing":
        return Problem(path, f"missing `{field}`, which has no default", f"add `{field} = ...`")
    return Problem(path, f"`{field}`: {error['msg'][0].lower()}{error['msg'][1:]}")


def _typed(data: dict) -> Spec:
    """pydantic only; raises Problems."""
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise Problems([_problem_from_pydantic(e, data) for e in exc.errors()]) from None


def _check_hole(spec: Spec, param: SearchParam, where: tuple, known: list[str]) -> list[Problem]:
    has_range = param.low is not None or param.high is not None
    if (param.choices is None) == (not has_range):
        return [Problem(where, "a search entry needs choices `in {a, b}` or a range `in low .. high`")]
    if param.choices is not None and not param.choices:
        return [Problem(where, "an empty choice set: a search needs at least one value to try",
                        f"e.g. `{param.path} in {{16, 32}}`")]
    if param.path not in known and layer_hole(param.path) is None:  # a layer_N past the last: assign says so
        return [Problem(where + ("path",), f"`{param.path}` is not something a search can vary here",
                        did_you_mean(param.path, known) or "see `mixc check --holes`")]
    if has_range:
        if param.low is None or param.high is None or param.low >= param.high:
            return [Problem(where, "a range needs low < high")]
        if param.log and (param.low <= 0 or param.step is not None):
            return [Problem(where, "a log range needs low > 0 and no step")]
    if param.path in TRAINING_HOLES:
        return []
    values = param.choices if param.choices is not None else [param.low, param.high]
    for value in values:
        if has_range and float(value).is_integer() and param.path != "attention_fraction":
            value = int(value)
        try:
            resolve(_typed(assign(spec, param.path, value)))
        except HoleError as exc:
            return [Problem(where, str(exc))]
        except Problems as exc:
            first = exc.problems[0]
            return [Problem(where, f"`{param.path} = {value!r}` gives an invalid spec: {first.message}",
                            first.hint)]
    return []


def check_search(spec: Spec) -> list[Problem]:
    if spec.search is None:
        return []
    known = hole_paths(spec)
    problems: list[Problem] = []
    for i, param in enumerate(spec.search.space):
        problems += _check_hole(spec, param, ("search", "space", i), known)
    # a point's first layer_N writes the ratio out as a list, after which the ratio's holes name nothing
    per_layer = [i for i, param in enumerate(spec.search.space) if layer_hole(param.path) is not None]
    ratio = [i for i, param in enumerate(spec.search.space) if param.path in SCHEDULE_HOLES]
    if per_layer and ratio:
        problems.append(Problem(("search", "space", ratio[0], "path"),
                                f"`{spec.search.space[ratio[0]].path}` varies the ratio, and "
                                f"`{spec.search.space[per_layer[0]].path}` picks layers one by one: a search "
                                "takes one or the other", "keep the layer_N entries or the ratio's, not both"))
    return problems


def validate(data: dict, source_map: SourceMap | None = None, model: str | None = None) -> Spec:
    """Plain data (as the DSL, JSON or YAML give it) to a checked Spec, or SpecError."""
    if not isinstance(data, dict):
        raise SpecError.single(f"a spec must be a mapping of fields, got {type(data).__name__}")
    check_data_size(data)
    data = dict(data)
    relocated: dict[tuple, tuple] = {}
    parents: dict[str, str] = {}
    problems: list[Problem] = []
    if isinstance(data.get("blocks"), dict):
        data["blocks"], relocated, parents, problems = flatten_blocks(data["blocks"])
    reporter = _Reporter(source_map, model or data.get("name"), relocated)
    problems += non_finite(data)
    try:
        if problems:
            raise Problems(problems)
        spec = _typed(data)
        resolve(spec)
        problems = check_search(spec)
        if problems:
            raise Problems(problems)
    except Problems as exc:
        raise reporter.error(drop_inherited(exc.problems, parents)) from None
    return spec


def non_finite(data: Any) -> list[Problem]:
    """Every inf or NaN (JSON's Infinity, YAML's .inf): no spec field takes one, and generated source would
    print it as a bare `inf`."""
    found, stack = [], [((), data)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            found.append(Problem(path, f"`{path[-1] if path else 'value'}` is {node}, not a finite number"))
        elif isinstance(node, dict):
            stack.extend((path + (k,), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((path + (i,), v) for i, v in enumerate(node))
    return found


def check_data_size(data: Any, where: str = "the spec") -> None:
    """Depth and fully expanded size, measured without expanding (YAML aliases share their nodes)."""
    depth = nesting_depth(data)
    if depth > limit("depth"):
        raise SpecError.single(f"{where} nests {depth} levels deep", hint=raise_hint("depth"))
    nodes = expanded_nodes(data)
    if nodes > limit("value_nodes"):
        raise SpecError.single(f"{where} expands to {nodes:,} values (YAML aliases count once per use)",
                               hint=raise_hint("value_nodes"))


def _pick(parsed: ParsedFile, model: str | None, origin: str) -> Spec:
    names = list(parsed.models)
    if model is None:
        if len(names) != 1:
            raise SpecError.single(f"{origin} defines {len(names)} models ({', '.join(names)}); name one",
                                   hint="pass model=NAME (or --model NAME)")
        model = names[0]
    if model not in parsed.models:
        raise SpecError.single(f"{origin} has no model `{model}`", hint=did_you_mean(model, names))
    return validate(parsed.models[model], parsed.source_map, model)


def loads(text: str, filename: str = "<string>", model: str | None = None) -> Spec:
    """A spec from DSL text."""
    return _pick(parse_text(text, filename), model, filename)


def load(source: str | Path | dict, model: str | None = None) -> Spec:
    """A checked Spec from a .mix/.json/.yaml path or a plain dict."""
    if isinstance(source, dict):
        return validate(source)
    path = Path(source)
    if not path.exists():
        raise SpecError.single(f"no such spec file: {shown_name(path)}")
    if path.suffix == ".mix":
        return _pick(parse_file(path), model, str(path))
    data, text = read_data_file(path)
    # Positions only: the data above keeps JSON's or YAML's own semantics.
    return validate(data, source_map_of(text, str(path), (DATA_ROOT,), path.suffix == ".json"), DATA_ROOT)


def read_data_file(path: Path) -> tuple[Any, str]:
    """A JSON or YAML spec file's data and text; every failure is a SpecError naming the file."""
    kind = path.suffix.lstrip(".").upper() or "YAML"
    try:
        text = read_text_file(path)
    except ReadError as exc:
        raise SpecError.single(f"cannot read spec file {shown_name(path)}: {exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError.single(f"{shown_name(path)}: not valid {kind}: {exc}") from None
    except RecursionError:
        raise SpecError.single(f"{shown_name(path)}: nested too deeply to read", hint=raise_hint("depth")) from None
    except ValueError as exc:  # an integer past Python's digit limit
        raise SpecError.single(f"{shown_name(path)}: not a usable {kind} value: {str(exc).split(';')[0]}",
                               hint="numbers in a spec are at most a few digits long") from None
    check_data_size(data, shown_name(path))
    return data, text


def locate(source: str | Path, problems: list[Problem], model: str | None = None,
           severity: str = "warning") -> SpecError:
    """Problems found after loading (a valid spec's warnings), pointed at the spec file's lines like its errors."""
    path = Path(source)
    if path.suffix == ".mix":
        parsed = parse_file(path)
        name = model or next(iter(parsed.models))
        source_map, blocks = parsed.source_map, parsed.models[name].get("blocks", {})
    else:
        data, text = read_data_file(path)
        name, blocks = DATA_ROOT, data.get("blocks", {})
        source_map = source_map_of(text, str(path), (DATA_ROOT,), path.suffix == ".json")
    _, relocated, _, _ = flatten_blocks(blocks if isinstance(blocks, dict) else {})
    error = _Reporter(source_map, name, relocated).error(problems)
    for diagnostic in error.diagnostics:
        diagnostic.severity = severity
    return SpecError(error.diagnostics, error.sources)
