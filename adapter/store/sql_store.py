"""The repository on a SQL database through SQLAlchemy Core: SQLite (WAL), the embedded
default, and PostgreSQL, the production store.

One write path serves create, update and bulk load: a batch of resources is versioned, stored and
indexed in one transaction, so a failure leaves nothing half-written. Writers of the same
resource are serialised (engines.py) before the version check, so no version is lost or doubled.
"""
from __future__ import annotations

import queue
import random
import threading
import time
from dataclasses import replace
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from adapter.fhir.definitions import AUDIT_TYPE
from adapter.fhir.extract import Indexed
from adapter.fhir.outcomes import FhirError, conflict, gone, not_found
from adapter.fhir.search import SearchRequest
from adapter.store.repository import (
    HistoryPage, Loadable, Refused, Repository, SearchPage, StoredResource,
)
from adapter.store.clients import SqlClients
from adapter.store.page_sessions import SqlPageSessions
from adapter.store.engines import (
    ByIdReader, is_postgresql, make_engine, normalize_url,
)
from adapter.store.integrity import Dangling, DanglingReferences, dangling, enabled_by_default
from adapter.store.migrate import upgrade
from adapter.store.sql_pages import search_page
from adapter.store.sql_writes import SqlTransaction, write_batch
from adapter.store.schema import INDEX_TABLES, history, resources
from adapter.store.compartment import everything_page, in_compartment
from adapter.store.budget import MAX_PAGE_BYTES, fitting
from adapter.store.search_sql import (
    build_queries,
)

__all__ = ["SqlStore"]

_ANALYZE_AFTER = 1000  # resources loaded at once after which PostgreSQL re-analyses the tables
_CURRENT_COLUMNS = ("res_type", "res_id", "version_id", "last_updated", "deleted", "data")
_HISTORY_COLUMNS = (*_CURRENT_COLUMNS, "method")


# History rows counted by generation(): a transaction still open when the count is taken has its
# numbers among the last this many, unless that many were written and committed in the meantime.
GENERATION_WINDOW = 100_000
DEADLOCK_RETRIES = 5  # attempts of a bulk-load batch that PostgreSQL ended as a deadlock


class WriteDeadlock(FhirError):
    """PostgreSQL ended the transaction to break a cycle of lock waits: nothing was written."""


class SqlStore(Repository, SqlClients, SqlPageSessions):
    """Versioned resources in SQL. `url` is a SQLAlchemy URL, e.g. sqlite:///var/adapter.db."""

    def __init__(self, url: str, migrate: bool = True, check_references: bool | None = None) -> None:
        self.url = normalize_url(url)
        # Every write's literal references must resolve (integrity.py); off for staged loads.
        self.check_references = enabled_by_default() if check_references is None else check_references
        self.engine = make_engine(self.url)
        if migrate:
            upgrade(self.engine)
        self._pg = is_postgresql(self.engine)
        # Single statements need no transaction; several that must agree need one snapshot.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._snapshot = self.engine.execution_options(isolation_level="REPEATABLE READ") \
            if self._pg else self.engine  # an SQLite transaction is already one snapshot
        self._by_id = ByIdReader(self.url)
        self._derived: dict[Any, Any] = {}

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; a PostgreSQL deadlock ends it as a WriteDeadlock (409)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(write=True)
            try:
                with conn.begin():
                    yield conn
            except IntegrityError as exc:  # a concurrent writer took the same version
                raise conflict(f"concurrent update, try again: {exc.orig}") from exc
            except OperationalError as exc:
                # Two writers referencing each other's resources can wait on each other's locks;
                # PostgreSQL ends one of them: a conflict to retry, not a server error.
                if type(exc.orig).__name__ == "DeadlockDetected":
                    raise WriteDeadlock(409, conflict("concurrent writes of related resources, "
                                                      "try again").issues) from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._snapshot.connect() as conn, conn.begin():
            yield conn

    # -- writes -------------------------------------------------------------------------------

    def create(self, resource: dict[str, Any]) -> StoredResource:
        with self.transaction() as tx:
            return tx.create(resource)

    def update(self, resource: dict[str, Any], if_match: int | None = None) -> StoredResource:
        with self.transaction() as tx:
            return tx.update(resource, if_match)

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        with self.transaction() as tx:
            return tx.delete(resource_type, resource_id)

    @contextmanager
    def transaction(self) -> Iterator[SqlTransaction]:
        with self._write() as conn:
            tx = SqlTransaction(conn, self.check_references, search_page)
            yield tx
            # At the end, so that a transaction's entries resolve among themselves first.
            if self.check_references and (found := dangling(conn, tx.written)):
                raise DanglingReferences(found)

    def load(self, items: Iterable[Loadable | list[Loadable]], batch_size: int = 1000, analyze: bool = True,
             volatile: Mapping[str, tuple[str, ...]] | None = None,
             outcomes: list[StoredResource] | None = None, refused: Refused | None = None) -> int:
        """Batches are written by a second thread while this one reads and validates the next,
        so the database's work overlaps ours; each batch is its own transaction."""
        batches: queue.Queue[list[tuple[int, list[Loadable]]] | None] = queue.Queue(maxsize=2)
        outcome: dict[str, Any] = {"written": 0}

        def writer() -> None:
            while (batch := batches.get()) is not None:
                if "error" not in outcome:
                    try:
                        outcome["written"] += self._load_batch(batch, volatile, outcomes, refused)
                    except BaseException as exc:  # handed to the caller below
                        outcome["error"] = exc

        thread = threading.Thread(target=writer, name="store-load", daemon=True)
        thread.start()
        try:
            batch: list[tuple[int, list[Loadable]]] = []  # (position, group)
            size = 0
            for position, item in enumerate(items):
                # a group is never split across two transactions
                batch.append((position, item if isinstance(item, list) else [item]))
                size += len(batch[-1][1])
                if size >= batch_size:
                    batches.put(batch)
                    batch, size = [], 0
                    if "error" in outcome:
                        break
            if batch and "error" not in outcome:
                batches.put(batch)
        finally:
            batches.put(None)
            thread.join()
        if "error" in outcome:
            raise outcome["error"]
        written = int(outcome["written"])
        if analyze and written >= _ANALYZE_AFTER:
            self.analyze()
        return written

    def reopen(self) -> SqlStore:
        return SqlStore(self.url, migrate=False, check_references=self.check_references)

    def generation(self) -> tuple[int, str, int]:
        """The newest history row's number and time and, on PostgreSQL, how many rows lie in
        the last GENERATION_WINDOW numbers, AuditEvents left out: the server writes one for
        every audited request, reads included, and no derived result reads them. SQLite commits
        one writer at a time, in number order; PostgreSQL may commit a transaction that took a
        lower number after a higher one: the count then changes though the newest row does not.
        The time tells a store emptied and written again (SQLite numbers from 1 again) from the
        one before. Index walks from the newest row, whatever the store's size."""
        data = history.c.res_type != AUDIT_TYPE
        with self._autocommit.connect() as conn:
            newest = conn.execute(select(history.c.seq, history.c.last_updated).where(data)
                                  .order_by(history.c.seq.desc()).limit(1)).first()
            top, when = (newest.seq, newest.last_updated) if newest else (0, "")
            recent = conn.execute(select(func.count()).select_from(history).where(
                history.c.seq > top - GENERATION_WINDOW, data)).scalar() or 0 if self._pg else 0
        return top, when, recent

    def derived(self) -> dict[Any, Any]:
        return self._derived

    def analyze(self) -> None:
        """Refresh the query planner's statistics.

        Without them both databases plan searches as for empty tables: SQLite then probes the
        date index by range instead of by resource, 100x slower at 10,000 resources.
        """
        with self._autocommit.connect() as conn:
            if self._pg:
                conn.exec_driver_sql("ANALYZE " + ", ".join(
                    t.name for t in (resources, history, *INDEX_TABLES.values())))
            else:
                conn.exec_driver_sql("PRAGMA analysis_limit=1000")  # sample, don't scan it all
                conn.exec_driver_sql("ANALYZE")

    def _load_batch(self, groups: list[tuple[int, list[Loadable]]],
                    volatile: Mapping[str, tuple[str, ...]] | None,
                    outcomes: list[StoredResource] | None, refused: Refused | None) -> int:
        """One transaction; with checked references, the groups whose references do not resolve
        after the batch is written are left out (said to `refused`) and the rest written again,
        until what is written resolves: a batch may hold both ends of a reference."""
        attempts = 0
        while True:
            batch = [item for _, group in groups for item in group]
            try:
                with self._write() as conn:
                    written: list[dict[str, Any]] = []
                    stored = write_batch(conn, batch, volatile=volatile, written=written)
                    if self.check_references and (found := dangling(conn, written)):
                        raise DanglingReferences(found)
                break
            except DanglingReferences as error:
                if refused is None:
                    raise
                groups = self._refuse(groups, error.found, refused)
            except WriteDeadlock:
                # Ingest workers writing shared resources (a product given to several children)
                # while checking each other's references can wait on each other; PostgreSQL
                # ended this batch, which wrote nothing: write it again, after a moment.
                attempts += 1
                if attempts >= DEADLOCK_RETRIES:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * attempts)
        if outcomes is not None:
            outcomes.extend(replace(s, data=None) for s in stored)  # the bytes are not wanted
        return sum(not s.unchanged for s in stored)

    @staticmethod
    def _refuse(groups: list[tuple[int, list[Loadable]]], found: list[Dangling],
                refused: Refused) -> list[tuple[int, list[Loadable]]]:
        bad = {d.resource for d in found}
        kept = []
        for position, group in groups:
            keys = {(r["resourceType"], r["id"]) for r in (i.resource if isinstance(i, Indexed) else i for i in group)}
            if keys & bad:
                refused(position, group, [d for d in found if d.resource in keys])
            else:
                kept.append((position, group))
        return kept

    # -- reads --------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        if self._by_id.usable:
            row = self._by_id.fetch(resource_type, resource_id)
        else:
            with self._autocommit.connect() as conn:
                row = conn.execute(select(
                    resources.c.version_id, resources.c.last_updated, resources.c.deleted,
                    resources.c.data).where(resources.c.res_type == resource_type,
                                            resources.c.res_id == resource_id)).first()
        if row is None:
            raise not_found(f"{resource_type}/{resource_id} is not known")
        version_id, last_updated, deleted, data = row
        if deleted:
            raise gone(f"{resource_type}/{resource_id} was deleted", str(version_id))
        return StoredResource(resource_type, resource_id, version_id, last_updated, False, data)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        if not 0 < version_id < 2 ** 63:  # beyond any database's integer: no such version
            raise not_found(f"{resource_type}/{resource_id} has no version {version_id}")
        with self._autocommit.connect() as conn:
            row = conn.execute(select(history).where(
                history.c.res_type == resource_type, history.c.res_id == resource_id,
                history.c.version_id == version_id)).first()
        if row is None:
            raise not_found(f"{resource_type}/{resource_id} has no version {version_id}")
        if row.deleted:
            raise gone(f"version {version_id} of {resource_type}/{resource_id} is a deletion",
                       str(version_id))
        return StoredResource(resource_type, resource_id, version_id, row.last_updated, False,
                              row.data, method=row.method)

    def history(self, resource_type: str | None = None, resource_id: str | None = None,
                since: str | None = None, count: int = 20, cursor: int | None = None) -> HistoryPage:
        where = []
        if resource_type:
            where.append(history.c.res_type == resource_type)
        if resource_id:
            where.append(history.c.res_id == resource_id)
        if since:
            where.append(history.c.last_updated >= since)
        with self._read() as conn:
            if resource_id and not conn.execute(select(history.c.seq).where(*where[:2]).limit(1)).first():
                raise not_found(f"{resource_type}/{resource_id} is not known")
            total = conn.execute(select(func.count()).select_from(history).where(*where)).scalar_one()
            page = where + ([history.c.seq < cursor] if cursor is not None else [])
            rows = conn.execute(select(history).where(*page).order_by(history.c.seq.desc())
                                .limit(count + 1)).all()
        window = rows[:count]
        more = len(rows) > count
        if (fits := fitting(window, MAX_PAGE_BYTES)) < len(window):
            window, more = window[:fits], True
        entries = [StoredResource(r.res_type, r.res_id, r.version_id, r.last_updated, r.deleted,
                                  r.data, created=r.version_id == 1, method=r.method)
                   for r in window]
        next_cursor = window[-1].seq if more and window else None
        return HistoryPage(entries, total, next_cursor)

    def search(self, request: SearchRequest) -> SearchPage:
        with self._read() as conn:
            return search_page(conn, request)

    def scan(self, request: SearchRequest, patients: list[str] | str | None = None,
             at_once: bool = False) -> Iterator[list[StoredResource]]:
        """Every match of a search in pages of `request.count`, by id (keyset), each page read
        on its own, or (`at_once`) all of them by one statement, fetched a page at a time: paging
        by keyset gathers the driving filter's matches again for every page, 15x the work at
        50,000 matches; `patients` keeps the compartment of those patients ("*": of any)."""
        cursor: tuple[Any, ...] | None = None
        while True:
            paged = replace(request, sort=(), cursor=cursor, includes=(), total="none")
            query, _ = build_queries(paged)
            if at_once:
                query = query.limit(None)
            if patients is not None:
                query = query.where(in_compartment(request.resource_type, patients))
            if at_once:
                with self._read() as conn:  # a server-side cursor on PostgreSQL: a page in memory at a time
                    for rows in conn.execution_options(stream_results=True).execute(query).partitions(paged.count):
                        yield [StoredResource(request.resource_type, r.res_id, r.version_id, r.last_updated,
                                              False, r.data) for r in rows]
                return
            with self._read() as conn:
                rows = conn.execute(query).all()
            page = rows[:paged.count]
            yield [StoredResource(request.resource_type, r.res_id, r.version_id, r.last_updated, False, r.data)
                   for r in page]
            if len(rows) <= paged.count or not page:
                return
            cursor = (page[-1].res_id,)

    def everything(self, patient_id: str, types: tuple[str, ...], since: str | None, count: int,
                   cursor: tuple[Any, ...] | None) -> SearchPage:
        with self._read() as conn:
            if conn.execute(select(resources.c.deleted).where(resources.c.res_type == "Patient",
                                                              resources.c.res_id == patient_id)).first() is None:
                raise not_found(f"Patient/{patient_id} is not known")
            return everything_page(conn, patient_id, types, since, count, cursor)

    def close(self) -> None:
        self._by_id.close()
        self.engine.dispose()
