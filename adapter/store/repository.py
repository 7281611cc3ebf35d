"""The one repository interface every store implements (SQLite now, PostgreSQL next).

Resources are kept as the JSON bytes that are served; every write makes a new version, a delete
makes a tombstone version, and old versions stay readable (https://hl7.org/fhir/R4/http.html).
Errors are raised as `FhirError`s (404, 410, 409, 412) so callers need no store-specific handling.
"""
from __future__ import annotations

import abc
from collections.abc import Hashable, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.extract import Indexed
from adapter.fhir.outcomes import FhirError
from adapter.fhir.search import SearchRequest

__all__ = ["StoredResource", "SearchPage", "HistoryPage", "Repository", "Resources", "BulkLoading", "Handle",
           "Transaction", "Loadable", "Refused"]

Loadable = dict[str, Any] | Indexed  # a resource, or one with its index rows already extracted
# Told, by `load`, of each item (its position among the items, the item as a group, why) left out
# because references in it do not resolve; the reasons are integrity.Dangling.
Refused = Callable[[int, list[Loadable], list[Any]], None]


@dataclass(slots=True)  # not frozen: frozen init costs a microsecond per read
class StoredResource:
    resource_type: str
    id: str
    version_id: int
    last_updated: str  # FHIR instant, UTC
    deleted: bool
    data: bytes | None  # None for a tombstone
    created: bool = False  # this write made the resource (201 rather than 200)
    method: str = "PUT"  # POST | PUT | DELETE: how this version came to be
    unchanged: bool = False  # an update equal to the current version: nothing was written


@dataclass(frozen=True)
class SearchPage:
    entries: list[StoredResource]
    total: int | None
    next_cursor: tuple[Any, ...] | None
    included: list[StoredResource] = field(default_factory=list)  # _include / _revinclude
    included_left_out: int = 0  # more than the server returns with one page: said in the Bundle
    previous_cursor: tuple[Any, ...] | None = None  # the cursor of the page before (search before it)
    notes: tuple[Any, ...] = ()  # outcome Issues for the Bundle, e.g. what access control left out


@dataclass(frozen=True)
class HistoryPage:
    entries: list[StoredResource]
    total: int | None  # None: not told (a filtered page cannot say how many versions match)
    next_cursor: int | None


class Transaction(abc.ABC):
    """Reads and writes that commit together or not at all (`Repository.transaction()`)."""

    @abc.abstractmethod
    def lock(self, keys: Iterable[tuple[str, str]]) -> None:
        """Serialise with other transactions taking the same keys ((type, id), or (type,
        "?" + a search) for a conditional write) until this one ends; take all at once."""

    @abc.abstractmethod
    def create(self, resource: dict[str, Any], resource_id: str | None = None) -> StoredResource:
        """A new resource, with the given id (e.g. one a transaction Bundle assigned) or a new one."""

    @abc.abstractmethod
    def update(self, resource: dict[str, Any], if_match: int | None = None) -> StoredResource:
        """Update or create (version + 1); 412 when `if_match` is not the current version."""

    @abc.abstractmethod
    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """Tombstone; None when there was nothing to delete."""

    def update_many(self, batch: list[Loadable]) -> list[StoredResource]:
        """Update-or-create each of `batch` (validated already; `Indexed` when its index rows
        were extracted ahead), as `update` does, at once: for a transaction that writes a whole
        file, a batch at a time."""
        return [self.update(item.resource if isinstance(item, Indexed) else item) for item in batch]

    def lock_all(self) -> None:
        """Keep every other writer waiting until this transaction ends: for one that writes a
        whole file, so that it takes one lock, not one a resource. Nothing to do here."""
        return None

    @abc.abstractmethod
    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """The current version, or None (unknown or deleted), as this transaction sees it."""

    @abc.abstractmethod
    def search(self, request: SearchRequest) -> SearchPage:
        """A search as this transaction sees the store."""


class Resources(abc.ABC):
    """Reading and writing resources: versions, history, search, transactions."""

    @abc.abstractmethod
    def create(self, resource: dict[str, Any]) -> StoredResource:
        """Store a new resource under a server-assigned id (version 1)."""

    @abc.abstractmethod
    def update(self, resource: dict[str, Any], if_match: int | None = None) -> StoredResource:
        """Store a new version under the resource's own id, creating it if unknown.

        `if_match` is the version the client last saw: 412 if the current one differs.
        """

    @abc.abstractmethod
    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """Write a tombstone version; None if there was nothing to delete."""

    @abc.abstractmethod
    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        """The current version: 404 if unknown, 410 if deleted."""

    def current(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The current version parsed, or None when there is none (unknown or deleted): for
        callers to whom a missing resource is an answer, not an error."""
        try:
            stored = self.read(resource_type, resource_id)
        except FhirError:
            return None
        return jsonio.parse(stored.data) if stored is not None and stored.data else None

    @abc.abstractmethod
    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        """One version: 404 if unknown, 410 if it is a tombstone."""

    @abc.abstractmethod
    def history(self, resource_type: str | None = None, resource_id: str | None = None,
                since: str | None = None, count: int = 20, cursor: int | None = None) -> HistoryPage:
        """Versions, newest first, of one resource, one type, or the whole store."""

    @abc.abstractmethod
    def search(self, request: SearchRequest) -> SearchPage:
        """Current, not-deleted resources matching every filter, in sort order, one page."""

    @abc.abstractmethod
    def scan(self, request: SearchRequest, patients: list[str] | str | None = None,
             at_once: bool = False) -> Iterator[list[StoredResource]]:
        """Every match of a search, page by page (`request.count` each), for exports; with
        `patients`, only their compartments ("*": every patient's). `at_once`: read in one
        statement (one snapshot, one pass over the index) for a caller that uses the pages as
        they come, rather than page by page (an export writes files between pages and should
        not hold a snapshot that long)."""

    @abc.abstractmethod
    def everything(self, patient_id: str, types: tuple[str, ...], since: str | None, count: int,
                   cursor: tuple[Any, ...] | None) -> SearchPage:
        """One page of a patient's compartment (the patient and what references it), in (type,
        id) order; 404 for an unknown patient."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """A unit of work: everything done through it commits at the end, or nothing does."""


class BulkLoading(abc.ABC):
    """Loading many validated resources at once (the command line's load, ingest and pull)."""

    @abc.abstractmethod
    def load(self, resources: Iterable[Loadable | list[Loadable]], batch_size: int = 1000,
             analyze: bool = True, volatile: Mapping[str, tuple[str, ...]] | None = None,
             outcomes: list[StoredResource] | None = None, refused: Refused | None = None) -> int:
        """Bulk update-or-create of already validated resources; returns how many were written
        (an update equal to the current version writes nothing; `volatile` names, by type,
        elements whose change alone is no change, e.g. a re-ingested Provenance's `recorded`).
        With `outcomes`, each write's StoredResource (`created`, `unchanged`) is appended to it,
        in the order of the resources.

        Each batch is one transaction; an item that is a list (the resources of one source
        record) is never split across two. A resource may come `Indexed` (its index rows
        extracted already, by the same `extract`) to spare the writing process that work. After a
        large load the planner's statistics are refreshed, unless the caller will (`analyze`).

        When the store checks references, each batch's must resolve once it is written; an item
        whose references do not is left out and said to `refused` (without it, the load fails
        with a 422), so that the caller can report it, or offer it again once the rest is in."""

    @abc.abstractmethod
    def analyze(self) -> None:
        """Refresh the database's query-planning statistics (after large loads)."""


class Handle(abc.ABC):
    """A handle's own part: what it lets its user do and see (access hooks, which a handle held
    to a client's scopes, site or exchange policy narrows), what may be cached under it, and
    its connections. The bare store sees and may do everything."""

    def permitted(self, types: tuple[str, ...], permission: str) -> tuple[str, ...]:
        """Which of `types` this handle may use for `permission` (a letter of "cruds"): all of
        them here; a handle held to a client's scopes (adapter/auth/guard.py) says fewer. What a
        request that names no type (a system search, an export) goes over."""
        return types

    def require(self, resource_type: str, permissions: str, what: str) -> None:
        """For an operation that reads and writes nothing (e.g. $validate): 403 unless this
        handle may do one of `permissions` (letters of "cruds") to the type. Nothing here."""
        return None

    def screen(self, request: SearchRequest) -> None:
        """403 unless this handle may search this way (a search checked before it runs later,
        e.g. an export's _typeFilter). Any search here; a policy's client may filter by less
        (adapter/exchange/view.py)."""
        return None

    def view(self) -> Hashable:
        """What this handle lets its user see, as a hashable value: two handles on the same store
        with the same view answer every read and search alike, so a result derived from one may
        be given to the other (a cache key). The bare store sees everything; a handle held to a
        client's site, scopes or exchange policy says which."""
        return ()

    def generation(self) -> Hashable:
        """A value that changes whenever a write commits: a result derived from the store holds
        while it stays the same. None: this handle cannot tell, so nothing may be cached."""
        return None

    def derived(self) -> dict[Any, Any]:
        """Room for results derived from the store, shared by every handle on this store object
        and kept while it lives; keyed by their callers with view() and generation(). Here: a
        new dict each time, so nothing is kept."""
        return {}

    @abc.abstractmethod
    def reopen(self) -> Repository:
        """Another handle on the same store, with its own connections: for a worker process
        (connections must never be shared across a fork)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""


class Repository(Resources, BulkLoading, Handle):
    """Versioned FHIR resources with history and search: a whole store, or a handle on one
    (adapter/store/forwarding.py) that changes some of what it does."""
