"""YAML specs (protocol, site mappings, catalogue) checked by a JSON Schema, every problem with
its line: `file:line: key: message`, so an engineer can go straight to it."""
from __future__ import annotations

import functools
import json
import pathlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema
import yaml

from adapter.errors import AdapterError

__all__ = ["SpecError", "Lines", "load_checked", "key_of", "package_schema"]


@functools.cache
def package_schema(package: str, name: str) -> dict[str, Any]:
    """A JSON Schema shipped inside a package (e.g. adapter.mapping, mapping.schema.json)."""
    return json.loads(resources.files(package).joinpath(name).read_text("utf-8"))  # type: ignore[no-any-return]


class SpecError(AdapterError):
    """A spec that cannot be used; `problems` are `file:line: key: message` lines."""

    status, code = 422, "invalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _collect(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "<<":  # a merge key: its mapping's keys belong to the parent
                for merged in (value.value if isinstance(value, yaml.SequenceNode) else [value]):
                    _collect(merged, path, {})
                continue
            _collect(value, path + (key.value,), out)
            out[path + (key.value,)] = key.start_mark.line + 1  # the key's line, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect(item, path + (i,), out)


def key_of(path: tuple[Any, ...]) -> str:
    """`rules[3].observation` for ("rules", 3, "observation")."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


@dataclass(frozen=True)
class Lines:
    """The line of every key and item of a spec, to point problems (and rules) at it."""

    file: str
    lines: dict[tuple[Any, ...], int]

    def line(self, path: tuple[Any, ...]) -> int:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def problem(self, path: tuple[Any, ...], message: str) -> str:
        return f"{self.file}:{self.line(path)}: {key_of(path)}: {message}"


# libyaml's safe loader where PyYAML has it (the same data and marks, ~10x faster), else PyYAML's own
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# YAML aliases share a node, so a few lines can stand for billions of values ("billion laughs":
# 3.2 GB, then a MemoryError, in the line walk and the schema check). The specs here use 15 at
# most and expand to under 1,400 values.
MAX_ALIASES = 100
MAX_VALUES = 100_000  # values once every alias is expanded


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _alias_problem(root: yaml.Node) -> str | None:
    """Past MAX_ALIASES or MAX_VALUES, or an alias inside what it names, what to say; each node
    visited once (its size summed from its children's, never by walking the expansion)."""
    size: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are still being walked
    aliases = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            open_.discard(id(node))
            size[id(node)] = 1 + sum(size[id(child)] for child in _children(node))
            if size[id(node)] > MAX_VALUES:
                return f"expands to more than {MAX_VALUES:,} values through its aliases"
        elif id(node) in open_:
            return f"an alias at line {node.start_mark.line + 1} names a node that holds it (a cycle)"
        elif id(node) in size:  # met again: an alias
            aliases += 1
            if aliases > MAX_ALIASES:
                return f"more than {MAX_ALIASES} aliases (*name)"
        else:
            size[id(node)] = 0
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return None


def load_checked(path: str | pathlib.Path, schema: dict[str, Any]) -> tuple[Any, Lines]:
    """Parse a YAML spec and check it against `schema`; SpecError names every problem."""
    file = str(path)
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"{file}:1: (file): {exc.strerror or exc}"]) from exc
    loader = _LOADER(text)  # parsed once: the nodes give the lines, and the data is built from them
    lines: dict[tuple[Any, ...], int] = {}
    try:
        node = loader.get_single_node()
        if node is not None and (problem := _alias_problem(node)) is not None:
            raise SpecError([f"{file}:{node.start_mark.line + 1}: (YAML): {problem}"])
        if node is not None:
            _collect(node, (), lines)  # before the data: building it merges `<<` keys into the nodes
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SpecError([f"{file}:{mark.line + 1 if mark else 1}: (YAML): {exc}"]) from exc
    finally:
        loader.dispose()
    where = Lines(file, lines)
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        problems += _render(err, where, schema)
    if problems:
        raise SpecError(problems)
    return data, where


def _render(err: jsonschema.ValidationError, where: Lines, schema: dict[str, Any]) -> list[str]:
    at = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        return [where.problem(at + (extra,), f"unknown key (expected one of: {', '.join(sorted(allowed))})")
                for extra in sorted(set(err.instance) - allowed)]
    if err.validator == "oneOf" and isinstance(err.validator_value, list):
        alternatives = [_resolve(alt, schema) for alt in err.validator_value]
        if isinstance(err.instance, dict):  # the form its keys name, if one does: that form's own problems
            meant = [i for i, alt in enumerate(alternatives)
                     if alt.get("required") and set(alt["required"]) <= set(err.instance)]
            most = max((len(alternatives[i]["required"]) for i in meant), default=0)
            meant = [i for i in meant if len(alternatives[i]["required"]) == most]  # {a, b} over {a}
            if len(meant) == 1:
                return [p for sub in err.context or () if sub.relative_schema_path[0] == meant[0]
                        for p in _render(sub, where, schema)]
        forms = "; ".join(_form(alt) for alt in alternatives)  # from the schema: new forms are listed too
        return [where.problem(at, f"{_shown(err.instance)} is not a form allowed here (the forms: {forms})")]
    return [where.problem(at, err.message)]


def _resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node and str(node["$ref"]).startswith("#/"):
        target: Any = schema
        for part in str(node["$ref"])[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _form(alternative: dict[str, Any]) -> str:
    """One form a oneOf allows, as an engineer writes it: `{mean: ...} (also: round)`, `text`."""
    if alternative.get("type") == "object" or "required" in alternative:
        required = list(alternative.get("required", []))
        optional = [k for k in alternative.get("properties", {}) if k not in required]
        shown = "{" + ", ".join(f"{k}: ..." for k in required) + "}"
        return shown + (f" (also: {', '.join(optional)})" if optional else "")
    kinds = alternative.get("type", "any value")
    kinds = " or ".join(kinds) if isinstance(kinds, list) else kinds
    kinds = {"string": "text", "array": "a list"}.get(kinds, kinds)
    return f"{kinds} ({alternative['description']})" if "description" in alternative else kinds


def _shown(instance: Any) -> str:
    text = json.dumps(instance, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
