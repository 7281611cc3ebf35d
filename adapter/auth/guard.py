"""The one place a client's access is enforced: a Repository that checks every call.

Every route, operation, transaction entry and export job reaches the data through the repository
it is handed; the gateway hands an authenticated request this wrapper instead of the store. So
a new interaction is guarded without a line of its own, and nothing can read around it.

Two rules, both checked here:
- scopes (adapter/auth/scopes.py): read/vread and instance history need `r`, searches, type
  and system history, exports and includes need `s` (includes: `r` on the included type),
  create `c`, update and patch `u`, delete `d`;
- sites: a client registered for a site sees and writes only resources labelled with its site
  (adapter/fhir/sites.py), plus the protocol definitions, which every client may read (but not
  a definition labelled with another site: that site's own ResearchStudy). What it writes is
  labelled with its site; it cannot relabel, change or point into another site's data, and it
  creates by PUT only ids in its own namespace (`<site>-...`), so it cannot take another site's.
  Another site's resource is answered as an unknown one, everywhere (404 with the same text, a
  delete that deletes nothing, the same refusal of a PUT): ids carry record numbers, and a site
  must not be able to count another's enrolment by asking for them.
The audit trail (AuditEvent) is the coordinating centre's: no site client reads it, nobody
writes it through the API.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Hashable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from adapter.auth.checks import DEFINITION_TYPES, Access, Checks, access_of
from adapter.fhir.definitions import AUDIT_TYPE, SERVED_TYPES
from adapter.fhir.outcomes import FhirError, Issue, forbidden
from adapter.fhir.search import SearchRequest
from adapter.store.forwarding import Forwarding
from adapter.store.repository import (
    HistoryPage, Loadable, Refused, Repository, SearchPage, StoredResource, Transaction,
)

__all__ = ["Access", "GuardedRepository", "DEFINITION_TYPES", "forbidden", "access_of"]


class GuardedTransaction(Transaction):
    def __init__(self, inner: Transaction, checks: Checks) -> None:
        self._inner, self._checks = inner, checks

    def lock(self, keys: Iterable[tuple[str, str]]) -> None:
        self._inner.lock(keys)

    def create(self, resource: dict[str, Any], resource_id: str | None = None) -> StoredResource:
        # an id in the body as well is the client's choice (a conditional update's); one given
        # alone the server's (a transaction's POST)
        chosen = resource_id if resource_id is not None and resource_id == resource.get("id") else None
        existing = self._checks.existing(self._inner.read, str(resource.get("resourceType")), chosen) if chosen else None
        self._checks.check_write(resource, "c", existing, self._inner.read, chosen)
        return self._inner.create(resource, resource_id)

    def update(self, resource: dict[str, Any], if_match: int | None = None) -> StoredResource:
        rid = str(resource.get("id"))
        existing = self._checks.existing(self._inner.read, str(resource.get("resourceType")), rid)
        self._checks.check_write(resource, "u", existing, self._inner.read, rid)
        return self._inner.update(resource, if_match)

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        self._checks.need(resource_type, "d", f"delete of {resource_type}")
        existing = self._checks.existing(self._inner.read, resource_type, resource_id)
        if existing is not None and not self._checks.visible(existing):
            return None  # another site's: as for an unknown id, nothing to delete (204), and nothing is
        return self._inner.delete(resource_type, resource_id)

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        self._checks.need(resource_type, "r", f"read of {resource_type}")
        stored = self._inner.read(resource_type, resource_id)
        return stored if stored is not None and self._checks.visible(stored) else None

    def search(self, request: SearchRequest) -> SearchPage:
        self._checks.need(request.resource_type, "s", f"search of {request.resource_type}")
        return self._checks.allowed_included(self._inner.search(self._checks.narrowed(request)))


class GuardedRepository(Forwarding):
    """`inner` as `access` may use it: every call that reads or writes resources is checked
    here; the rest (generation, derived, analyze, close) goes on unchanged."""

    def __init__(self, inner: Repository, access: Access) -> None:
        super().__init__(inner)
        self.access = access
        self._checks = Checks(access, inner)

    # Writes go through a guarded transaction: one set of write checks, made on what the
    # transaction sees (the store's own create/update/delete are one transaction each too).
    def create(self, resource: dict[str, Any]) -> StoredResource:
        with self.transaction() as tx:
            return tx.create(resource)

    def update(self, resource: dict[str, Any], if_match: int | None = None) -> StoredResource:
        with self.transaction() as tx:
            return tx.update(resource, if_match)

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        with self.transaction() as tx:
            return tx.delete(resource_type, resource_id)

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        self._checks.need(resource_type, "r", f"read of {resource_type}")
        try:
            stored = self.inner.read(resource_type, resource_id)
        except FhirError as error:
            raise self._hidden(error, resource_type, resource_id) from None
        if not self._checks.visible(stored):
            raise self._checks.unknown(resource_type, resource_id)
        return stored

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        self._checks.need(resource_type, "r", f"vread of {resource_type}")
        try:
            stored = self.inner.vread(resource_type, resource_id, version_id)
        except FhirError as error:
            raise self._hidden(error, resource_type, resource_id, version_id) from None
        if not self._checks.visible(stored):
            raise self._checks.unknown(resource_type, resource_id, version_id)
        return stored

    def _hidden(self, error: FhirError, rtype: str, rid: str, version: int | None = None) -> FhirError:
        """A 410 on another site's resource (deleted, or a deletion's version) is the 404 of an
        unknown one: that it was there, or when it went, is that site's to know."""
        if error.status != 410 or self.access.site is None:
            return error
        last = self._checks.existing(self.inner.read, rtype, rid)
        return self._checks.unknown(rtype, rid, version) if last is None or not self._checks.visible(last) else error

    def history(self, resource_type: str | None = None, resource_id: str | None = None,
                since: str | None = None, count: int = 20, cursor: int | None = None) -> HistoryPage:
        if resource_type and resource_id:
            self._checks.need(resource_type, "r", f"history of {resource_type}/{resource_id}")
        elif resource_type:
            self._checks.need(resource_type, "s", f"history of {resource_type}")
        elif not self.access.scopes.types("s"):
            raise forbidden(f"the system history needs a search scope (system/*.s or system/[type].s); "
                            f"this client has: {self.access.scopes or 'no scopes'}")
        page = self.inner.history(resource_type, resource_id, since, count, cursor)
        kept = [e for e in page.entries if self.access.scopes.allows(e.resource_type, "s" if not resource_id else "r")
                and self._was_visible(e)]
        if resource_id and len(kept) != len(page.entries):
            raise self._checks.unknown(str(resource_type), resource_id)
        if len(kept) == len(page.entries):
            return page
        return HistoryPage(kept, None, page.next_cursor)  # a total over what is left out would tell

    def _was_visible(self, entry: StoredResource) -> bool:
        """A version's site; a deletion's is that of the version it ended."""
        if entry.data is not None or self.access.site is None or entry.resource_type in DEFINITION_TYPES:
            return self._checks.visible(entry)
        if entry.version_id <= 1:
            return False
        try:
            return self._checks.visible(self.inner.vread(entry.resource_type, entry.id, entry.version_id - 1))
        except FhirError:
            return False

    def search(self, request: SearchRequest) -> SearchPage:
        self._checks.need(request.resource_type, "s", f"search of {request.resource_type}")
        return self._checks.allowed_included(self.inner.search(self._checks.narrowed(request)))

    def load(self, resources: Iterable[Loadable | list[Loadable]], batch_size: int = 1000,
             analyze: bool = True, volatile: Mapping[str, tuple[str, ...]] | None = None,
             outcomes: list[StoredResource] | None = None, refused: Refused | None = None) -> int:
        raise forbidden("bulk loading is done by the command line (fhir-adapter load / ingest), not by a client")

    def scan(self, request: SearchRequest, patients: list[str] | str | None = None,
             at_once: bool = False) -> Iterator[list[StoredResource]]:
        self._checks.need(request.resource_type, "s", f"{'search' if at_once else 'export'} of {request.resource_type}")
        return self.inner.scan(self._checks.narrowed(request), patients, at_once)

    def everything(self, patient_id: str, types: tuple[str, ...], since: str | None, count: int,
                   cursor: tuple[Any, ...] | None) -> SearchPage:
        self.read("Patient", patient_id)  # scope and site of the patient, before anything of theirs
        outside = [t for t in types if not self.access.scopes.allows(t, "r")]
        if outside and set(types) != set(SERVED_TYPES):  # asked for by name (_type): refused
            raise forbidden(f"_type: {', '.join(outside)} outside this client's scopes "
                            f"({self.access.scopes})", "_type")
        page = self.inner.everything(patient_id, tuple(t for t in types if t not in outside), since, count, cursor)
        entries = [e for e in page.entries if self._checks.visible(e)]
        notes = list(page.notes)
        if outside:
            notes.append(Issue("suppressed", f"left out, outside this client's scopes: {', '.join(outside)}",
                               severity="information"))
        return dataclasses.replace(page, entries=entries, notes=tuple(notes))

    def require(self, resource_type: str, permissions: str, what: str) -> None:
        if not any(self.permitted((resource_type,), p) for p in permissions):
            self._checks.need(resource_type, permissions[0], what)

    def permitted(self, types: tuple[str, ...], permission: str) -> tuple[str, ...]:
        return tuple(t for t in types if self.access.scopes.allows(t, permission)
                     and not (t == AUDIT_TYPE and self.access.site))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        with self.inner.transaction() as inner:
            yield GuardedTransaction(inner, self._checks)

    def transaction(self) -> AbstractContextManager[Transaction]:
        return self._transaction()

    def reopen(self) -> Repository:
        return GuardedRepository(self.inner.reopen(), self.access)

    def view(self) -> Hashable:
        return (self.inner.view(), self.access.site, str(self.access.scopes), self.access.policy)
