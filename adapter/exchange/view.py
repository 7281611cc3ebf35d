"""The store as a client under an exchange policy sees it (the coordinating centre's client at
a site): every resource read, searched, included, listed in a history or exported goes through
the policy first (adapter/exchange/policy.py); nothing is written. What the policy lets out of
no type is not there for it: searches and exports of such types find nothing.

The view wraps the guarded repository, so scopes and site are checked first, then the policy.
Reads by the ids that leave (pseudonymous) are not possible: the centre pulls by search and
export, and the site keeps the only key that maps them back.
"""
from __future__ import annotations

import functools
import os
import pathlib
import secrets
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import orjson

from adapter.exchange.deidentify import Deidentifier
from adapter.exchange.displays import known_displays
from adapter.exchange.policy import SpecError, load_policy, policy_path
from adapter.exchange.site_release import enrolments, schedules, site_release
from adapter.fhir.outcomes import FhirError, bad_request, forbidden, not_found
from adapter.fhir.search import SearchRequest, parse_search
from adapter.private import beside_store, open_private, private_dir
from adapter.store.forwarding import Forwarding
from adapter.store.repository import HistoryPage, Repository, SearchPage, StoredResource

__all__ = ["PolicyView", "deidentifier", "exchange_key", "default_exchange_key_file", "POLICY_DIR"]

POLICY_DIR = pathlib.Path(__file__).resolve().parent.parent.parent / "mappings" / "exchange"


def default_exchange_key_file(database_url: str) -> str:
    """exchange-key beside an SQLite file (var/exchange-key for var/adapter.db), else in var/."""
    return beside_store(database_url, "exchange-key")


def exchange_key(path: str | os.PathLike[str]) -> bytes:
    """The site's pseudonym key (32 random bytes, hex), made on first use, readable by its
    owner only; several workers starting at once agree on the first one linked into place."""
    path = pathlib.Path(path)
    if not path.exists():
        private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        with open_private(tmp) as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


@functools.lru_cache(maxsize=16)
def _policy(directory: str, name: str, mtime: float) -> Any:
    return load_policy(policy_path(directory, name))


def deidentifier(store: Repository, name: str, directory: str | os.PathLike[str], key_file: str) -> Deidentifier:
    """The named policy (re-read when its file changes) with the site's key; the age at
    enrolment comes from the child's ResearchSubject in `store`."""
    path = policy_path(directory, name)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise forbidden(f"this client is registered with the exchange policy {name!r}, which this site does "
                        f"not have ({path}): nothing can be served to it") from None
    try:
        policy = _policy(str(directory), name, mtime)
    except SpecError as error:
        raise forbidden(f"this client is registered with the exchange policy {name!r}, which is not usable "
                        f"here ({len(error.problems)} problem(s): see `fhir-adapter exchange check {name}`): "
                        "nothing is served under it until it is fixed") from None
    return Deidentifier(policy, exchange_key(key_file), lambda patient_id: enrolments(store).get(patient_id),
                        known_displays(store), lambda deid: site_release(store, deid), schedules(store))


class PolicyView(Forwarding):
    """`inner` (the guarded repository) through a policy: reads only."""

    def __init__(self, inner: Repository, policy: Deidentifier) -> None:
        super().__init__(inner)
        self.policy = policy
        if policy.policy.release_problems():
            raise forbidden(f"the exchange policy {policy.policy.name} is refused by its check: "
                            f"{policy.policy.release_problems()[0]}; nothing is served under it")
        release = policy.release
        if release is not None and not release.ok:  # never a release below the policy's k
            raise forbidden(f"the exchange policy {policy.policy.name} does not reach k = {release.k} on this "
                            f"site's data ({len(release.suppressed)} of {release.children} children would have to "
                            f"be suppressed; see `fhir-adapter exchange check {policy.policy.name}`): nothing is "
                            "served under it")
        # _lastUpdated: what Bulk Data's _since is made of; the labels, when the policy keeps them.
        kept = {r.path for r in policy.policy.rules if r.action == "keep"}
        self._filters = {"_lastUpdated"} | {f"_{e}" for e in ("security", "tag") if f"Resource.meta.{e}" in kept}

    @property
    def sent_whole(self) -> frozenset[str]:
        """Types every export sends whole, whatever its `_since` (export.py): those that carry
        the policy's quasi-identifiers, whose shared form follows the release."""
        return frozenset({"Patient", "Condition"}) if self.policy.policy.k_anonymity is not None else frozenset()

    @property
    def unshared(self) -> Repository:
        """The guarded repository under the policy: for what the server itself must look up
        by stored ids (a Group's members for its export), never for what is served."""
        return self.inner

    @property
    def access(self) -> Any:  # what the export job records, as for the guarded repository
        return getattr(self.inner, "access", None)

    def _out(self, stored: StoredResource) -> StoredResource | None:
        if stored.data is None:
            return stored
        shared = self.policy.apply(orjson.loads(stored.data))
        if shared is None:
            return None
        return replace(stored, id=shared["id"], data=orjson.dumps(shared))

    def _all(self, entries: Iterable[StoredResource]) -> list[StoredResource]:
        return [out for out in map(self._out, entries) if out is not None]

    def _one(self, stored: StoredResource, asked: str) -> StoredResource:
        out = self._out(stored)
        if out is None:  # named as the client named it: the stored id of a Group is not its to know
            raise not_found(f"{stored.resource_type}/{asked} is not shared under the exchange policy "
                            f"{self.policy.policy.name}")
        return out

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise forbidden(f"a client under the exchange policy {self.policy.policy.name} reads only")

    create = update = delete = load = transaction = _refuse

    def stored_id(self, resource_type: str, shared_id: str) -> str:
        """The stored id of a resource the client names by its shared id. Ids of re-keyed types
        cannot be turned back (that is the point), except a Group's: there are few, so the
        cohorts can be found by trying each (for Group-level export). A stored id given for a
        re-keyed type is not one the client may use: that would tie it to the shared one."""
        if resource_type not in self.policy.policy.rekey_ids:
            return shared_id
        if resource_type == "Group":
            request = parse_search("Group", [("_count", "1000"), ("_total", "none")])
            for page in self.inner.scan(request):
                for entry in page:
                    shared = self._out(entry)
                    if shared is not None and shared.id == shared_id:
                        return entry.id
        raise not_found(f"no {resource_type}/{shared_id} here: under the exchange policy "
                        f"{self.policy.policy.name}, {resource_type} is read by search or export, not by id")

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        return self._one(self.inner.read(resource_type, self.stored_id(resource_type, resource_id)), resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        return self._one(self.inner.vread(resource_type, self.stored_id(resource_type, resource_id), version_id),
                         resource_id)

    def history(self, resource_type: str | None = None, resource_id: str | None = None,
                since: str | None = None, count: int = 20, cursor: int | None = None) -> HistoryPage:
        if resource_type and resource_id:
            resource_id = self.stored_id(resource_type, resource_id)
        page = self.inner.history(resource_type, resource_id, since, count, cursor)
        entries = [self.deleted_as_shared(e) if e.deleted else self._out(e) for e in page.entries]
        # newest first, as ever; among writes of the same instant (an ingest writes a site's
        # children in record order) by shared id, not in write order
        shown = sorted((e for e in entries if e is not None), key=lambda e: (e.last_updated or "", e.id, e.version_id),
                       reverse=True)
        return replace(page, entries=shown, total=None)

    def deleted_as_shared(self, tombstone: StoredResource) -> StoredResource | None:
        """A deletion as the policy's client knows the resource (its shared id), or None when
        the resource never left; the site comes from the version before the deletion."""
        if tombstone.version_id <= 1:
            return None
        try:
            before = self.inner.vread(tombstone.resource_type, tombstone.id, tombstone.version_id - 1)
        except FhirError:
            return None
        shared = self._out(before)
        if shared is None:
            return None
        return replace(tombstone, id=shared.id)

    def screen(self, request: SearchRequest) -> None:
        """Filters and sort orders only on what the policy passes unchanged for every type: a
        filter or an order on a withheld element (a birth date, a record number, an id) would
        tell what the policy withholds, one question at a time."""
        name, allowed = self.policy.policy.name, self._filters
        for found in request.filters:
            if found.code not in allowed:
                raise forbidden(f"under the exchange policy {name}, searches filter only by "
                                f"{', '.join(sorted(allowed))}: {found.code} would tell what it withholds",
                                found.code)
        for key in request.sort:
            if getattr(key, "code", None) != "_lastUpdated":
                raise forbidden(f"under the exchange policy {name}, searches sort only by _lastUpdated", "_sort")
        if request.compartment is not None:
            raise forbidden(f"under the exchange policy {name}, a patient's compartment is not searched by id")
        self.inner.screen(request)

    def search(self, request: SearchRequest) -> SearchPage:
        self.screen(request)
        if request.cursor is not None:
            request = replace(request, cursor=self._unsealed(request.cursor, request.resource_type))
        page = self.inner.search(request)
        entries = self._all(page.entries)
        # In stored-id order (the store's order, and its order among equal _lastUpdated) the n-th
        # would be the n-th record number: a page is in shared-id order within its sort order.
        if not request.sort:
            entries.sort(key=lambda e: e.id)
        else:  # _lastUpdated only (screen)
            entries.sort(key=lambda e: (e.last_updated or "", e.id), reverse=request.sort[0].descending)
        included = sorted(self._all(page.included), key=lambda e: (e.resource_type, e.id))  # as entries
        return replace(page, entries=entries, included=included,
                       total=None,  # some matches may not be shared: a count would say too much
                       next_cursor=self._sealed(page.next_cursor, request.resource_type),
                       previous_cursor=self._sealed(page.previous_cursor, request.resource_type))

    # A paging cursor ends with the stored id of a page's last entry: `site-a-A0020` would tell
    # the record number, and a made-up cursor would place any stored id among the shared ones.
    # The client gets the whole cursor sealed with the site's key (its sort values too: changed,
    # they would move a stored id among other entries), and only a sealed one is taken back.
    def _sealed(self, cursor: tuple[Any, ...] | None, rtype: str) -> tuple[Any, ...] | None:
        if cursor is None:
            return None
        return (*[None] * (len(cursor) - 1), self.policy.seal(orjson.dumps(list(cursor)).decode(), rtype))

    def _unsealed(self, cursor: tuple[Any, ...], rtype: str) -> tuple[Any, ...]:
        opened = self.policy.unseal(str(cursor[-1]), rtype) if cursor else None
        values = orjson.loads(opened) if opened is not None else None
        if not isinstance(values, list) or len(values) != len(cursor):
            raise bad_request("_cursor: not a cursor of this search (take the links of its Bundles)", "_cursor")
        return tuple(values)

    def scan(self, request: SearchRequest, patients: list[str] | str | None = None,
             at_once: bool = False) -> Iterator[list[StoredResource]]:
        self.screen(request)
        for page in self.inner.scan(request, patients, at_once):  # read in stored-id order: see search
            yield sorted(self._all(page), key=lambda e: e.id)

    def everything(self, patient_id: str, types: tuple[str, ...], since: str | None, count: int,
                   cursor: tuple[Any, ...] | None) -> SearchPage:
        page = self.inner.everything(self.stored_id("Patient", patient_id), types, since, count, cursor)
        return replace(page, entries=self._all(page.entries), total=None)

    def permitted(self, types: tuple[str, ...], permission: str) -> tuple[str, ...]:
        if any(p in "cud" for p in permission):
            return ()
        return tuple(t for t in self.inner.permitted(types, permission) if self.policy.policy.tree(t) is not None)

    def reopen(self) -> Repository:
        return PolicyView(self.inner.reopen(), self.policy)

    def view(self) -> Hashable:
        # The policy as it is now and the site's key (a digest of both, never the key): an edited
        # policy file or a new key must not serve what was derived under the old ones.
        return ("policy", self.policy.keyed(f"view:{self.policy.policy!r}"), self.inner.view())
