"""The one place a client's access is enforced: a Repository that checks every call.

Every route, operation, transaction entry and export job reaches the data through the repository
it is handed; the gateway hands an authenticated request this wrapper instead of the store. So
a new interaction is guarded without a line of its own, and nothing can read around it.

Two rules, both checked here:
- scopes (adapter/auth/scopes.py): read/vread and instance history need `r`, searches, type
  and system history, exports and includes need `s` (includes: `r` on the included type),
  create `c`, update and patch `u`, delete `d`;
- sites: a client registered for a site sees and writes only resources labelled with its site
  (adapter/fhir/sites.py), plus the protocol definitions, which every client may read. What it
  writes is labelled with its site; it cannot relabel, change or point into another site's data.
The audit trail (AuditEvent) is the coordinating centre's: no site client reads it, nobody
writes it through the API.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Hashable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import orjson

from adapter.fhir.definitions import AUDIT_TYPE, SERVED_TYPES
from adapter.fhir.outcomes import FhirError, Issue, forbidden
from adapter.fhir.references import targets
from adapter.fhir.search import Filter, SearchRequest
from adapter.fhir.sites import SITE_SYSTEM, sites_of, with_site
from adapter.auth.scopes import Scopes, parse_scopes
from adapter.store.repository import (
    HistoryPage, Loadable, Refused, Repository, SearchPage, StoredResource, Transaction,
)

__all__ = ["Access", "GuardedRepository", "DEFINITION_TYPES", "forbidden", "access_of"]

# The study's protocol, its terminology and its directory of sites: readable by every
# authorised client, written by the centre only.
DEFINITION_TYPES = frozenset({"ResearchStudy", "PlanDefinition", "ActivityDefinition", "CodeSystem", "ValueSet",
                              "Measure", "ConceptMap", "Organization", "Location"})


@dataclass(frozen=True)
class Access:
    """Who asks: a client, its site (None: the coordinating centre) and its granted scopes."""

    client: str
    site: str | None
    scopes: Scopes
    policy: str | None = None  # an exchange policy everything it reads goes through

    def as_json(self) -> dict[str, Any]:
        return {"client": self.client, "site": self.site, "scope": str(self.scopes), "policy": self.policy}


@functools.lru_cache(maxsize=256)
def _scopes(text: str) -> Scopes:
    return parse_scopes(text)


def access_of(client: str, site: str | None, scope: str, policy: str | None = None) -> Access:
    """An Access from a token's claims (its scope string parsed once per distinct string)."""
    return Access(client, site or None, _scopes(scope), policy or None)


class _Checks:
    """The checks, shared by the repository and its transactions."""

    def __init__(self, access: Access, repo: Repository) -> None:
        self.access, self._repo = access, repo
        self._site_filter = (Filter("_security", "token", None, ((SITE_SYSTEM, access.site),))
                             if access.site else None)

    def need(self, rtype: str, permission: str, what: str) -> None:
        if rtype == AUDIT_TYPE and (self.access.site or permission in "cud"):
            raise forbidden("the audit trail is read by the coordinating centre only and written by "
                            "the server only")
        if not self.access.scopes.allows(rtype, permission):
            raise forbidden(f"{what} needs the scope system/{rtype}.{permission} (or system/*.{permission}); "
                            f"this client has: {self.access.scopes or 'no scopes'}")

    def visible(self, stored: StoredResource) -> bool:
        site = self.access.site
        if site is None or stored.resource_type in DEFINITION_TYPES or stored.data is None:
            return True
        return site in sites_of(orjson.loads(stored.data))

    def check_visible(self, stored: StoredResource) -> StoredResource:
        if not self.visible(stored):
            raise forbidden(f"{stored.resource_type}/{stored.id} is not site {self.access.site}'s data; "
                            f"client {self.access.client} may reach its own site's only")
        return stored

    def narrowed(self, request: SearchRequest) -> SearchRequest:
        """The search, held to the client's scopes and site (definitions are everyone's): a
        chain or _has searches its target type too, so it needs `s` on that type and matches
        only the client's site's resources there (else a reference to an id another site later
        fills, or another site's resources pointing in, would tell about them)."""
        for f in request.filters:
            self._check_chain(f)
        filters = tuple(self._held(f) for f in request.filters)
        if self._site_filter is not None and request.resource_type not in DEFINITION_TYPES:
            filters = (*filters, self._site_filter)
        return dataclasses.replace(request, filters=filters)

    def _check_chain(self, f: Filter) -> None:
        if f.chain is None or f.target is None:
            return
        self.need(f.target, "s", f"a chained or _has search through {f.target}")
        self._check_chain(f.chain)

    def _held(self, f: Filter) -> Filter:
        if f.chain is None or f.target is None:
            return f
        also = f.also
        if self._site_filter is not None and f.target not in DEFINITION_TYPES:
            also = (*also, self._site_filter)
        return dataclasses.replace(f, chain=self._held(f.chain), also=also)

    def allowed_included(self, page: SearchPage) -> SearchPage:
        """Included resources the client may read. Those outside its scopes are said (it knows
        its scopes); another site's are left out unsaid, as a search never counts them."""
        in_scope = [e for e in page.included if self.access.scopes.allows(e.resource_type, "r")]
        kept = [e for e in in_scope if self.visible(e)]
        if len(kept) == len(page.included):
            return page
        notes = page.notes
        if len(in_scope) != len(page.included):
            left_out = sorted({e.resource_type for e in page.included} - {e.resource_type for e in in_scope})
            notes = (*notes, Issue("suppressed", f"included resources outside this client's scopes are left "
                                   f"out ({', '.join(left_out)})", severity="information"))
        return dataclasses.replace(page, included=kept, notes=notes)

    def check_write(self, resource: dict[str, Any], permission: str, existing: StoredResource | None,
                    read: Any) -> None:
        """`resource` may be written (labelled with the client's site); `existing` is what it
        replaces; `read(type, id)` finds what its references point to."""
        rtype = str(resource.get("resourceType"))
        self.need(rtype, permission, f"{'create' if permission == 'c' else 'update'} of {rtype}")
        site = self.access.site
        if site is None:
            return
        if rtype in DEFINITION_TYPES:
            raise forbidden(f"{rtype} is a protocol definition: written by the coordinating centre only")
        if existing is not None:
            self.check_visible(existing)
        others = sites_of(resource) - {site}
        if others:
            raise forbidden(f"the resource is labelled for site {', '.join(sorted(others))}; client "
                            f"{self.access.client} writes site {site}'s data only", "meta.security")
        with_site(resource, site)
        found, _ = targets(resource)
        for target in found:
            if target.type in DEFINITION_TYPES:
                continue
            pointed = read(target.type, target.id)
            if pointed is not None and not self.visible(pointed):
                raise forbidden(f"{target.expression}: {target.reference} is another site's data", target.expression)

    def existing(self, read: Any, rtype: str, rid: str) -> StoredResource | None:
        """What an update or delete replaces, for the site check (None: a new resource). A
        deleted resource is its last version: a site may not take over another site's id."""
        if self.access.site is None:
            return None
        try:
            current = read(rtype, rid)
        except FhirError as error:
            if error.status not in (404, 410):
                raise
            current = None
        if current is not None:
            return current  # type: ignore[no-any-return]
        try:
            versions = self._repo.history(rtype, rid, count=2).entries
        except FhirError:
            return None  # never stored
        return next((v for v in versions if v.data is not None), None)


class GuardedTransaction(Transaction):
    def __init__(self, inner: Transaction, checks: _Checks) -> None:
        self._inner, self._checks = inner, checks

    def lock(self, keys: Iterable[tuple[str, str]]) -> None:
        self._inner.lock(keys)

    def create(self, resource: dict[str, Any], resource_id: str | None = None) -> StoredResource:
        self._checks.check_write(resource, "c", None, self._inner.read)
        return self._inner.create(resource, resource_id)

    def update(self, resource: dict[str, Any], if_match: int | None = None) -> StoredResource:
        existing = self._checks.existing(self._inner.read, str(resource.get("resourceType")), str(resource.get("id")))
        self._checks.check_write(resource, "u", existing, self._inner.read)
        return self._inner.update(resource, if_match)

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        self._checks.need(resource_type, "d", f"delete of {resource_type}")
        existing = self._checks.existing(self._inner.read, resource_type, resource_id)
        if existing is not None:
            self._checks.check_visible(existing)
        return self._inner.delete(resource_type, resource_id)

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        self._checks.need(resource_type, "r", f"read of {resource_type}")
        stored = self._inner.read(resource_type, resource_id)
        if stored is None and self._checks.access.site is not None:  # deleted: whose was it?
            last = self._checks.existing(self._inner.read, resource_type, resource_id)
            if last is not None:
                self._checks.check_visible(last)
        return self._checks.check_visible(stored) if stored is not None else None

    def search(self, request: SearchRequest) -> SearchPage:
        self._checks.need(request.resource_type, "s", f"search of {request.resource_type}")
        return self._checks.allowed_included(self._inner.search(self._checks.narrowed(request)))


class GuardedRepository(Repository):
    """`inner` as `access` may use it."""

    def __init__(self, inner: Repository, access: Access) -> None:
        self.inner, self.access = inner, access
        self._checks = _Checks(access, inner)

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
            return self._checks.check_visible(self.inner.read(resource_type, resource_id))
        except FhirError as error:
            raise self._not_found_or_forbidden(error, resource_type, resource_id) from None

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        self._checks.need(resource_type, "r", f"vread of {resource_type}")
        try:
            return self._checks.check_visible(self.inner.vread(resource_type, resource_id, version_id))
        except FhirError as error:
            raise self._not_found_or_forbidden(error, resource_type, resource_id) from None

    def _not_found_or_forbidden(self, error: FhirError, rtype: str, rid: str) -> FhirError:
        """A 404 or 410 on another site's resource (deleted, or no such version) is a 403: that
        it was deleted, or how many versions it has, is that site's to know."""
        if error.status not in (404, 410) or self.access.site is None:
            return error
        last = self._checks.existing(self.inner.read, rtype, rid)
        if last is not None and not self._checks.visible(last):
            return forbidden(f"{rtype}/{rid} is not site {self.access.site}'s data; client "
                             f"{self.access.client} may reach its own site's only")
        return error

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
            raise forbidden(f"{resource_type}/{resource_id} is not site {self.access.site}'s data")
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

    def generation(self) -> Hashable:
        return self.inner.generation()

    def derived(self) -> dict[Any, Any]:
        return self.inner.derived()

    def analyze(self) -> None:
        self.inner.analyze()

    def close(self) -> None:
        self.inner.close()
