"""The store's one write path on SQL: a batch of resources versioned, stored as bytes with
their history rows, and indexed, inside the caller's transaction; deletions as tombstones; and
the Transaction handle over one connection. SqlStore (sql_store.py) runs them for every write:
REST, transaction Bundles and loads."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from adapter.fhir.dates import now_instant
from adapter.fhir.extract import Indexed, IndexRows
from adapter.fhir.ids import check_id
from adapter.fhir.jsonio import dumps
from adapter.fhir.outcomes import precondition_failed
from adapter.fhir.search import SearchRequest
from adapter.store.engines import bulk_insert, lock_everything, lock_resources, one_of
from adapter.store.integrity import dangling
from adapter.store.repository import Loadable, SearchPage, StoredResource, Transaction
from adapter.store.schema import INDEX_COLUMNS, INDEX_TABLES, history, resources
from adapter.store.site_labels import inherit_sites
from adapter.store.versions import new_version, unchanged_version, with_last_updated

__all__ = ["write_batch", "delete_on", "clear_index", "SqlTransaction"]

_CURRENT_COLUMNS = ("res_type", "res_id", "version_id", "last_updated", "deleted", "data")
_HISTORY_COLUMNS = (*_CURRENT_COLUMNS, "method")


def write_batch(conn: Connection, items: list[Loadable], method: str = "PUT", if_match: int | None = None,
                volatile: Mapping[str, tuple[str, ...]] | None = None,
                written: list[dict[str, Any]] | None = None) -> list[StoredResource]:
    """Version, store and index `items` (update-or-create each) on `conn`, inside its
    transaction: the one write path of every store write (REST, transactions, loads)."""
    batch = [item.resource if isinstance(item, Indexed) else item for item in items]
    given = {(item.resource["resourceType"], item.resource["id"]): item.rows
             for item in items if isinstance(item, Indexed)}
    keys = {(r["resourceType"], check_id(r.get("id"), f"{r['resourceType']}.id")) for r in batch}
    lock_resources(conn, keys)
    # Pre-extracted index rows (ingest) come with their labels made; others may inherit one.
    inherit_sites(conn, [item for item in items if not isinstance(item, Indexed)])
    current = _current(conn, keys)
    versions = _Versions(current, method, now_instant())
    for resource in batch:
        versions.add(resource, if_match, (volatile or {}).get(resource["resourceType"], ()))
    if written is not None:  # for the reference check, which runs once all are written
        written.extend(body for _, body in versions.latest.values())
    _store_rows(conn, versions, [key for key in versions.latest if key in current], given)
    return versions.stored


class _Versions:
    """The new version of each resource of a batch, from the current ones."""

    def __init__(self, current: dict[tuple[str, str], Any], method: str, now: str) -> None:
        self.current, self.method, self.now = current, method, now
        self.versions = {key: row.version_id for key, row in current.items()}
        self.live = {key for key, row in current.items() if not row.deleted}
        self.stored: list[StoredResource] = []
        self.history_rows: list[dict[str, Any]] = []
        # A batch may hold one resource twice: only its last version is current and indexed.
        self.latest: dict[tuple[str, str], tuple[dict[str, Any], Any]] = {}

    def add(self, resource: dict[str, Any], if_match: int | None, volatile: tuple[str, ...]) -> None:
        key = (resource["resourceType"], resource["id"])
        previous = self.versions.get(key)
        if if_match is not None and previous != if_match:
            raise precondition_failed(
                f"If-Match names version {if_match} but the current version of "
                f"{key[0]}/{key[1]} is {previous if previous is not None else 'none (no such resource)'}")
        if key in self.live and key not in self.latest and (
                same := unchanged_version(self.current[key], resource, volatile)):
            self.stored.append(same)  # nothing changed: no version, no history, same time
            return
        version, now = (previous or 0) + 1, self.now
        body = new_version(resource, version, now)
        data = dumps(body)
        row = {"res_type": key[0], "res_id": key[1], "version_id": version,
               "last_updated": now, "deleted": False, "data": data}
        self.history_rows.append({**row, "method": self.method})
        self.latest[key] = (row, body)
        self.stored.append(StoredResource(key[0], key[1], version, now, False, data,
                                          created=key not in self.live, method=self.method))
        self.versions[key] = version
        self.live.add(key)


def _store_rows(conn: Connection, versions: _Versions, existing: list[tuple[str, str]],
                given: dict[tuple[str, str], IndexRows]) -> None:
    """The new current rows, history rows and index rows, in place of the old ones."""
    clear_index(conn, existing)
    _delete_current(conn, existing)
    bulk_insert(conn, resources, _CURRENT_COLUMNS,
                [tuple(row[c] for c in _CURRENT_COLUMNS) for row, _ in versions.latest.values()])
    bulk_insert(conn, history, _HISTORY_COLUMNS,
                [tuple(row[c] for c in _HISTORY_COLUMNS) for row in versions.history_rows])
    index_rows: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in INDEX_TABLES}
    for (rtype, rid), (_, body) in versions.latest.items():
        extracted = with_last_updated(given.get((rtype, rid)), body)
        for kind, rows in vars(extracted).items():
            index_rows[kind].extend((rtype, rid, *r) for r in rows)
    for kind, rows in index_rows.items():
        bulk_insert(conn, INDEX_TABLES[kind], ("res_type", "res_id", *INDEX_COLUMNS[kind]), rows)


def _current(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    found = {}
    for rtype, ids in _by_type(keys).items():
        rows = conn.execute(
            select(resources.c.res_id, resources.c.version_id, resources.c.deleted,
                   resources.c.last_updated, resources.c.data)
            .where(resources.c.res_type == rtype, one_of(conn, resources.c.res_id, ids)))
        for row in rows:
            found[(rtype, row.res_id)] = row
    return found


def _delete_current(conn: Connection, keys: list[tuple[str, str]]) -> None:
    for rtype, ids in _by_type(keys).items():
        conn.execute(delete(resources).where(resources.c.res_type == rtype,
                                             one_of(conn, resources.c.res_id, ids)))


def clear_index(conn: Connection, keys: list[tuple[str, str]]) -> None:
    for rtype, ids in _by_type(keys).items():
        for table in INDEX_TABLES.values():
            conn.execute(delete(table).where(table.c.res_type == rtype,
                                             one_of(conn, table.c.res_id, ids)))


def delete_on(conn: Connection, resource_type: str, resource_id: str) -> StoredResource | None:
    now = now_instant()
    lock_resources(conn, [(resource_type, resource_id)])
    row = conn.execute(select(resources.c.version_id, resources.c.deleted).where(
        resources.c.res_type == resource_type, resources.c.res_id == resource_id)).first()
    if row is None or row.deleted:
        return None
    version = row.version_id + 1
    conn.execute(update(resources).where(
        resources.c.res_type == resource_type, resources.c.res_id == resource_id,
    ).values(version_id=version, last_updated=now, deleted=True, data=None))
    conn.execute(insert(history).values(
        res_type=resource_type, res_id=resource_id, version_id=version, last_updated=now,
        deleted=True, method="DELETE", data=None))
    clear_index(conn, [(resource_type, resource_id)])
    return StoredResource(resource_type, resource_id, version, now, True, None, method="DELETE")


def _by_type(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    return by_type


class SqlTransaction(Transaction):
    """Reads and writes on one connection in one database transaction: all or nothing.

    SQLite: the transaction holds the write lock from its start (BEGIN IMMEDIATE), so what a
    search inside it sees cannot change before it commits. PostgreSQL: `lock` takes
    transaction-scoped advisory locks (conditions, resources) in one sorted call.
    """

    def __init__(self, conn: Connection, check_references: bool,
                 search_on: Callable[[Connection, SearchRequest], SearchPage]) -> None:
        self._conn, self._check_references, self._search_on = conn, check_references, search_on
        self.written: list[dict[str, Any]] = []  # checked for references before the commit

    def lock(self, keys: Iterable[tuple[str, str]]) -> None:
        lock_resources(self._conn, keys)

    def create(self, resource: dict[str, Any], resource_id: str | None = None) -> StoredResource:
        resource = {**resource, "id": resource_id or str(uuid.uuid4())}
        return write_batch(self._conn, [resource], method="POST", written=self.written)[0]

    def update(self, resource: dict[str, Any], if_match: int | None = None) -> StoredResource:
        return write_batch(self._conn, [resource], if_match=if_match, written=self.written)[0]

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return delete_on(self._conn, resource_type, resource_id)

    def lock_all(self) -> None:
        lock_everything(self._conn)

    def update_many(self, batch: list[Loadable]) -> list[StoredResource]:
        written: list[dict[str, Any]] = []
        stored = write_batch(self._conn, batch, written=written)
        if self._check_references:
            # Checked now, so that a long transaction keeps only what does not resolve yet (a
            # reference to a resource later in the file) for the check at its end.
            late = {d.resource for d in dangling(self._conn, written)}
            self.written.extend(b for b in written if (b["resourceType"], b["id"]) in late)
        return stored

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        row = self._conn.execute(select(
            resources.c.version_id, resources.c.last_updated, resources.c.deleted, resources.c.data)
            .where(resources.c.res_type == resource_type, resources.c.res_id == resource_id)).first()
        if row is None or row.deleted:
            return None
        return StoredResource(resource_type, resource_id, row.version_id, row.last_updated, False, row.data)

    def search(self, request: SearchRequest) -> SearchPage:
        return self._search_on(self._conn, request)
