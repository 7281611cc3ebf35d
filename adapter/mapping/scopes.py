"""The scopes of one source row: the record itself, each of its visits (a CSV row, or each item
of a JSON document's visit list), each item a rule repeats over (`for_each`), and whether a rule
holds in a scope (`when`) or has nothing to read there."""
from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator

from adapter.mapping.fields import Problem, Scope, Value, text_of
from adapter.mapping.reading import read_rows
from adapter.mapping.sources import SourceError, SourceRow
from adapter.mapping.spec import MappingSpec, Rule

__all__ = ["read_source", "root_scope", "unique_key", "visit_of", "holds", "idle", "items_of", "visit_scopes"]

_PLACEHOLDER = re.compile(r"\{([^}]+)\}")


def read_source(spec: MappingSpec, path: str | pathlib.Path) -> Iterator[SourceRow | SourceError]:
    """The rows of one file, each of its table (reading.py)."""
    return read_rows(spec, path)


def root_scope(spec: MappingSpec, row: SourceRow) -> Scope:
    scope = Scope(row.values, spec.tabular, spec.source.get("decimal_mark", "."), seen=set(), table=spec.table(row.table))
    if row.places:
        scope.cells.update(row.places)
    return scope


def unique_key(spec: MappingSpec, row: SourceRow) -> tuple[str, ...]:
    """What identifies the record: a second one with the same key is a duplicate (within its
    table: a source of several tables adds the table's name)."""
    if row.key is not None:
        return row.key  # worked out once per row, by the duplicate check (run.py)
    names = spec.table(row.table).unique
    if spec.tabular:  # a column each: what Scope.get reads, without a scope
        key = tuple(text_of(row.values.get(name)).strip() for name in names)
    else:
        scope = root_scope(spec, row)
        key = tuple(text_of(scope.get(name).raw).strip() for name in names)
    return key + (row.table,) if len(spec.tables) > 1 else key


def _fill(template: str, match: re.Match[str], scope: Scope) -> str:
    """`injection-{1}` with a group of the match, `month-{month}` with a field of the scope."""
    def value(name: str) -> str:
        if name.isdigit():
            return match.group(int(name)) or ""
        got = scope.get(name)
        if got.empty:
            raise Problem(got.label, "", f"needed for visit {template!r}, but empty")
        return text_of(got.raw).strip()
    return _PLACEHOLDER.sub(lambda m: value(m.group(1)), template)


def visit_of(spec: MappingSpec, scope: Scope) -> str:
    table = scope.table or spec.tables[0]
    value = scope.get(table.visit_field)
    text = text_of(value.raw).strip()
    for pattern, template in table.visits:
        match = pattern.fullmatch(text)
        if match:
            return _fill(template, match, scope)
    raise Problem(value.label, value.raw, f"unknown visit (expected one of: {', '.join(table.visit_matches)})")


def holds(rule: Rule, scope: Scope) -> bool:
    return rule.when is None or rule.when.holds(scope)


def idle(rule: Rule, scope: Scope) -> bool:
    """Every column the rule reads is empty in this row: it would make, reject and warn of
    nothing (plan.idle_columns); what it would have read is recorded as read."""
    if rule.idle is None:
        return False
    row = scope.root
    for column in rule.idle:
        value = row.get(column)
        if value is not None and (not isinstance(value, str) or value.strip()):
            return False
    if scope.seen is not None:
        scope.seen |= rule.idle_seen
    return True


def items_of(rule: Rule, scope: Scope) -> Iterator[Scope]:
    each = rule.data.get("for_each")
    if each is None:
        yield scope
    elif "items" in each:
        path = each["items"]
        items = scope.get(path)
        if isinstance(items.raw, list):
            for i, item in enumerate(items.raw):
                yield scope.child(item, f"{items.label}[{i}]")
        elif not items.empty:
            raise Problem(items.label, "", "expected a list")
    elif "split" in each:
        columns = [scope.get(name) for name in each["split"]]
        lists = [text_of(c.raw).split(each["separator"]) if not c.empty else [] for c in columns]
        if not lists[0]:
            return
        for column, parts in zip(columns[1:], lists[1:], strict=True):
            if len(parts) != len(lists[0]):
                raise Problem(column.label, column.raw, f"{len(parts)} values where {columns[0].label} "
                              f"lists {len(lists[0])}")
        for i in range(len(lists[0])):
            yield scope.child(scope.item, scope.item_path, {
                name: Value(values[i].strip(), value.label)
                for name, value, values in zip(each["split"], columns, lists, strict=True)})
    else:
        group = each["checked"]
        prefix = f"{group}___"
        for box, ticked in scope.root.items():
            if box.startswith(prefix) and scope.seen is not None:
                scope.seen.add(box)  # every box of the group is read, ticked or not
            if box.startswith(prefix) and text_of(ticked).strip() == "1":
                yield scope.child(scope.item, scope.item_path, {group: Value(box[len(prefix):], box)})


def visit_scopes(spec: MappingSpec, root: Scope) -> Iterator[Scope]:
    """One scope per visit: the row itself (CSV), or each item of the document's visit list."""
    if spec.tabular or "items" not in spec.source:
        yield root
        return
    items = root.get(spec.source["items"])
    if not isinstance(items.raw, list):
        if not items.empty:
            raise Problem(items.label, "", "expected a list of visits")
        return
    for i, item in enumerate(items.raw):
        yield root.child(item, f"{items.label}[{i}]")
