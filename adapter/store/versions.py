"""What makes a new version, shared by every store: the body written (versionId and
lastUpdated set by the server), whether an update says anything new (an update equal to the
current version writes nothing, as HAPI keeps a no-op update's version), and the index rows of
`_lastUpdated`, which only the write itself can know."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from adapter.fhir.dates import date_range
from adapter.fhir.extract import IndexRows, extract
from adapter.fhir.jsonio import dumps, parse
from adapter.store.repository import StoredResource

__all__ = ["new_version", "unchanged_version", "with_last_updated"]


def new_version(resource: dict[str, Any], version: int, now: str) -> dict[str, Any]:
    """The body stored: resourceType, id and meta first, the server's meta in it."""
    meta = {**(resource.get("meta") or {}), "versionId": str(version), "lastUpdated": now}
    return {"resourceType": resource["resourceType"], "id": resource["id"], "meta": meta,
            **{k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}}


def unchanged_version(current: Any, resource: dict[str, Any], volatile: tuple[str, ...]) -> StoredResource | None:
    """The current version when `resource` says nothing new: equal to it ignoring the server's
    meta (versionId, lastUpdated) and the `volatile` elements (e.g. a Provenance's `recorded`,
    restamped by every re-ingest of an unchanged row), as HAPI keeps a no-op update's version."""
    # Compared as sorted JSON text: the new body's key order and number types (int, Decimal,
    # float) then cannot make a difference that the stored bytes would not show.
    stored = parse(current.data)
    if dumps(_content(stored, volatile), sort_keys=True) != dumps(_content(resource, volatile), sort_keys=True):
        return None
    return StoredResource(resource["resourceType"], resource["id"], current.version_id,
                          current.last_updated, False, current.data, unchanged=True)


def _content(resource: dict[str, Any], volatile: tuple[str, ...]) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    body = {k: v for k, v in resource.items() if k != "meta" and k not in volatile}
    return {**body, "meta": meta} if meta else body


def with_last_updated(given: IndexRows | None, body: dict[str, Any]) -> IndexRows:
    """Index rows extracted ahead (by an ingest worker) predate `meta.lastUpdated`, which only
    this write sets: the `_lastUpdated` rows always come from the stored body."""
    if given is None:
        return extract(body)
    ahead = [row for row in given.date if row[0] != "_lastUpdated"]
    # The row extract() makes for Resource.meta.lastUpdated, without a second extraction.
    return replace(given, date=[*ahead, ("_lastUpdated", *date_range(body["meta"]["lastUpdated"]))])
