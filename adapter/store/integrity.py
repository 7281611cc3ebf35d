"""Referential integrity: the literal references of what a write stored must resolve here.

Checked inside the write's own transaction, after its resources are written, so that the
write's resources (a transaction's entries, a load's batch, a resource naming itself) count as
existing. On PostgreSQL the targets are first locked shared (writers and deletes of a target
lock it exclusively), so a concurrent delete cannot slip between this check and the commit;
SQLite's single write lock already excludes it.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, false, select

from adapter.fhir.outcomes import FhirError, Issue
from adapter.fhir.references import Target, targets
from adapter.store.engines import lock_resources, one_of
from adapter.store.schema import history, resources

__all__ = ["Dangling", "DanglingReferences", "dangling", "enabled_by_default", "SETTING"]

SETTING = "FHIR_ADAPTER_REFERENTIAL_INTEGRITY"  # "off": staged loads whose targets come later


def enabled_by_default() -> bool:
    return os.environ.get(SETTING, "on").strip().lower() not in ("off", "0", "false", "no")


@dataclass(frozen=True)
class Dangling:
    """A reference of a stored resource that does not resolve (or is no reference at all)."""

    resource: tuple[str, str]  # the referring resource
    expression: str  # Observation.subject.reference
    reference: str
    reason: str
    code: str = "not-found"  # or "invalid": no reference at all

    def issue(self, prefix: str = "") -> Issue:
        expression = f"{prefix}.{self.expression.split('.', 1)[1]}" if prefix else self.expression
        return Issue(self.code, self.reason, expression)


class DanglingReferences(FhirError):
    """422 naming each element whose reference does not resolve."""

    def __init__(self, found: list[Dangling], where: dict[tuple[str, str], str] | None = None) -> None:
        # `where`: a resource's place, e.g. Bundle.entry[2].resource, in place of its type
        super().__init__(422, [d.issue((where or {}).get(d.resource, "")) for d in found])
        self.found = found

    def located(self, where: dict[tuple[str, str], str]) -> DanglingReferences:
        return DanglingReferences(self.found, where)


def dangling(conn: Connection, written: Iterable[dict[str, Any]]) -> list[Dangling]:
    """What does not resolve among the references of the resources just written on `conn`."""
    found: list[Dangling] = []
    wanted: list[tuple[tuple[str, str], Target]] = []
    for resource in written:
        key = (resource["resourceType"], resource["id"])
        refs, invalid = targets(resource)
        found.extend(Dangling(key, i.expression, i.reference, i.reason, "invalid") for i in invalid)
        wanted.extend((key, t) for t in refs if (t.type, t.id) != key or t.version is not None)
    if not wanted:
        return found
    keys = {(t.type, t.id) for _, t in wanted}
    lock_resources(conn, keys, shared=True)
    present = _present(conn, keys)
    versions = _versions(conn, {(t.type, t.id, t.version) for _, t in wanted if t.version is not None})
    for key, t in wanted:
        if (t.type, t.id) not in present if t.version is None else (t.type, t.id, t.version) not in versions:
            what = f"{t.type}/{t.id}" + (f" version {t.version}" if t.version is not None else "")
            found.append(Dangling(key, t.expression, t.reference,
                                  f"{t.reference!r} does not resolve: there is no {what} here"))
    return found


def _present(conn: Connection, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    present: set[tuple[str, str]] = set()
    for rtype, ids in by_type.items():
        rows = conn.execute(select(resources.c.res_id).where(
            resources.c.res_type == rtype, one_of(conn, resources.c.res_id, ids), resources.c.deleted == false()))
        present.update((rtype, str(rid)) for (rid,) in rows)
    return present


def _versions(conn: Connection, wanted: set[tuple[str, str, int | None]]) -> set[tuple[str, str, int | None]]:
    found: set[tuple[str, str, int | None]] = set()
    for rtype, rid, version in wanted:
        if version is not None and 0 < version < 2 ** 63 and conn.execute(select(history.c.seq).where(and_(
                history.c.res_type == rtype, history.c.res_id == rid, history.c.version_id == version,
                history.c.deleted == false()))).first():
            found.add((rtype, rid, version))
    return found
