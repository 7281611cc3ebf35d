"""A Repository in memory: the same contract as the SQL stores, kept in dicts.

For tests of what sits above the store (one contract suite runs over it and both SQL stores:
tests/test_repository_contract.py) and for trying a mapping or a policy without a database. It
keeps versions, history and the search index (the same `extract()` as the SQL stores), and
answers the searches the contract holds every store to: filters on every parameter type (with
:missing, :not, :exact, :contains, :text, :below, :above), _id and _lastUpdated, sorting by
_id or _lastUpdated, paging and totals. A search it cannot answer (chains, _has, composites,
includes, a compartment, other sort keys) is a 400 that says so, never a wrong answer. References
are not checked, and nothing outlives the process.
"""
from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from adapter.fhir.dates import now_instant
from adapter.fhir.extract import IndexRows, Indexed, index_key, normalize_string
from adapter.fhir.ids import check_id
from adapter.fhir.jsonio import dumps
from adapter.fhir.outcomes import FhirError, Issue, gone, not_found, precondition_failed
from adapter.fhir.search import Filter, SearchRequest
from adapter.store.repository import (
    HistoryPage, Loadable, Refused, Repository, SearchPage, StoredResource, Transaction,
)
from adapter.store.versions import new_version, unchanged_version, with_last_updated

__all__ = ["MemoryStore"]

Key = tuple[str, str]


class MemoryStore(Repository):
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._current: dict[Key, StoredResource] = {}
        self._versions: dict[Key, list[StoredResource]] = {}
        self._history: list[StoredResource] = []  # in write order: its index is the history cursor
        self._rows: dict[Key, IndexRows] = {}
        self._derived: dict[Any, Any] = {}

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
    def _transaction(self) -> Iterator[Transaction]:
        with self._lock:  # one writer at a time; what it did is undone if it fails
            saved = (dict(self._current), {k: list(v) for k, v in self._versions.items()}, len(self._history),
                     dict(self._rows))
            try:
                yield _MemoryTransaction(self)
            except BaseException:
                self._current, self._versions, self._rows = saved[0], saved[1], saved[3]
                del self._history[saved[2]:]
                raise

    def transaction(self) -> Any:
        return self._transaction()

    def write(self, resource: dict[str, Any], method: str, if_match: int | None = None,
              volatile: tuple[str, ...] = (), rows: IndexRows | None = None) -> StoredResource:
        rtype = str(resource.get("resourceType"))
        key = (rtype, check_id(resource.get("id"), f"{rtype}.id"))
        current = self._current.get(key)
        previous = self._versions[key][-1].version_id if key in self._versions else None
        if if_match is not None and previous != if_match:
            raise precondition_failed(f"If-Match names version {if_match} but the current version of "
                                      f"{key[0]}/{key[1]} is {previous or 'none (no such resource)'}")
        if current is not None and (same := unchanged_version(current, resource, volatile)):
            return same
        now = now_instant()
        body = new_version(resource, (previous or 0) + 1, now)
        stored = StoredResource(rtype, key[1], (previous or 0) + 1, now, False, dumps(body),
                                created=current is None, method=method)
        self._current[key] = stored
        self._versions.setdefault(key, []).append(stored)
        self._history.append(stored)
        self._rows[key] = with_last_updated(rows, body)
        return stored

    def tombstone(self, rtype: str, rid: str) -> StoredResource | None:
        key = (rtype, rid)
        if key not in self._current:
            return None
        version = self._versions[key][-1].version_id + 1
        stored = StoredResource(rtype, rid, version, now_instant(), True, None, method="DELETE")
        del self._current[key]
        del self._rows[key]
        self._versions[key].append(stored)
        self._history.append(stored)
        return stored

    def load(self, resources: Iterable[Loadable | list[Loadable]], batch_size: int = 1000, analyze: bool = True,
             volatile: Mapping[str, tuple[str, ...]] | None = None,
             outcomes: list[StoredResource] | None = None, refused: Refused | None = None) -> int:
        written = 0
        with self.transaction():
            for item in resources:
                for one in item if isinstance(item, list) else [item]:
                    resource, rows = (one.resource, one.rows) if isinstance(one, Indexed) else (one, None)
                    stored = self.write(resource, "PUT", None, (volatile or {}).get(resource["resourceType"], ()),
                                        rows)
                    written += not stored.unchanged
                    if outcomes is not None:
                        outcomes.append(replace(stored, data=None))
        return written

    def analyze(self) -> None:
        return None

    def current_stored(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """The current version as a transaction reads it (None: unknown or deleted)."""
        return self._current.get((resource_type, resource_id))

    # -- reads --------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        key = (resource_type, resource_id)
        if key in self._current:
            return self._current[key]
        if key in self._versions:
            last = self._versions[key][-1]
            raise gone(f"{resource_type}/{resource_id} was deleted", str(last.version_id))
        raise not_found(f"{resource_type}/{resource_id} is not known")

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        found = [v for v in self._versions.get((resource_type, resource_id), []) if v.version_id == version_id]
        if not found:
            raise not_found(f"{resource_type}/{resource_id} has no version {version_id}")
        if found[0].deleted:
            raise gone(f"version {version_id} of {resource_type}/{resource_id} is a deletion", str(version_id))
        return found[0]

    def history(self, resource_type: str | None = None, resource_id: str | None = None,
                since: str | None = None, count: int = 20, cursor: int | None = None) -> HistoryPage:
        if resource_type and resource_id and (resource_type, resource_id) not in self._versions:
            raise not_found(f"{resource_type}/{resource_id} is not known")
        matching = [(seq, v) for seq, v in enumerate(self._history, 1)
                    if (not resource_type or v.resource_type == resource_type)
                    and (not resource_id or v.id == resource_id) and (not since or v.last_updated >= since)]
        page = [(seq, v) for seq, v in reversed(matching) if cursor is None or seq < cursor][:count + 1]
        more = len(page) > count
        page = page[:count]
        return HistoryPage([replace(v, created=v.version_id == 1) for _, v in page], len(matching),
                           page[-1][0] if more and page else None)

    def search(self, request: SearchRequest) -> SearchPage:
        _supported(request)
        matches = sorted((self._current[k] for k, rows in self._rows.items()
                          if k[0] == request.resource_type and all(_holds(f, rows) for f in request.filters)),
                         key=lambda s: s.id)
        for key in reversed(request.sort):  # stable sorts, the last key first
            code = key.code
            matches.sort(key=lambda s: _value(code, s), reverse=key.descending)  # noqa: B023 (sorted now)
        total = None if request.total == "none" else len(matches)
        if request.cursor is not None:
            matches = [m for m in matches if _after(request, m, tuple(request.cursor))]
        window = matches[:request.count] if request.count > 0 else []
        following = None
        if len(matches) > request.count and window:
            following = (*(_value(k.code, window[-1]) for k in request.sort), window[-1].id)
        return SearchPage(list(window), total, following)

    def scan(self, request: SearchRequest, patients: list[str] | str | None = None,
             at_once: bool = False) -> Iterator[list[StoredResource]]:
        if patients is not None:
            raise _unsupported("a compartment export")
        cursor = None
        while True:
            page = self.search(replace(request, sort=(), cursor=cursor, total="none"))
            yield page.entries
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def everything(self, patient_id: str, types: tuple[str, ...], since: str | None, count: int,
                   cursor: tuple[Any, ...] | None) -> SearchPage:
        raise _unsupported("$everything")

    # -- the handle ---------------------------------------------------------------------------

    def generation(self) -> Any:
        return len(self._history)

    def derived(self) -> dict[Any, Any]:
        return self._derived

    def reopen(self) -> Repository:
        return self  # the same dicts: there are no connections to keep apart

    def close(self) -> None:
        return None


class _MemoryTransaction(Transaction):
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def lock(self, keys: Iterable[tuple[str, str]]) -> None:
        return None  # the store's lock is held for the whole transaction

    def create(self, resource: dict[str, Any], resource_id: str | None = None) -> StoredResource:
        return self._store.write({**resource, "id": resource_id or str(uuid.uuid4())}, "POST")

    def update(self, resource: dict[str, Any], if_match: int | None = None) -> StoredResource:
        return self._store.write(copy.deepcopy(resource), "PUT", if_match)

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return self._store.tombstone(resource_type, resource_id)

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return self._store.current_stored(resource_type, resource_id)

    def search(self, request: SearchRequest) -> SearchPage:
        return self._store.search(request)


# -- searching ---------------------------------------------------------------------------------

def _unsupported(what: str) -> FhirError:
    return FhirError(400, [Issue("not-supported", f"the in-memory store does not answer {what}; "
                                 "a SQL store does")])


def _supported(request: SearchRequest) -> None:
    if request.includes:
        raise _unsupported("_include or _revinclude")
    if request.compartment is not None:
        raise _unsupported("a search in a compartment")
    if request.before:
        raise _unsupported("the page before a cursor")
    if any(k.code not in ("_id", "_lastUpdated") for k in request.sort):
        raise _unsupported("a sort by other than _id or _lastUpdated")
    for f in request.filters:
        if f.chain is not None or f.type in ("composite", "has") or f.modifier in ("of-type", "identifier"):
            raise _unsupported(f"the search parameter {f.code} as asked (chains, _has, composites)")


def _value(code: str, stored: StoredResource) -> str:
    return stored.last_updated if code == "_lastUpdated" else stored.id


def _after(request: SearchRequest, stored: StoredResource, cursor: tuple[Any, ...]) -> bool:
    """Whether `stored` comes after the cursor (the sort values and id of a page's last entry)."""
    for key, seen in zip(request.sort, cursor, strict=False):
        value = _value(key.code, stored)
        if value != seen:
            return bool(value < seen) if key.descending else bool(value > seen)
    return stored.id > str(cursor[-1])


def _holds(f: Filter, rows: IndexRows) -> bool:
    own = [r[1:] for r in getattr(rows, f.type, []) if r[0] == f.code]
    if f.modifier == "missing":
        return all(bool(v[0]) == (not own) for v in f.values)
    found = any(_matches(f, value, row) for value in f.values for row in own)
    return not found if f.modifier == "not" else found


def _matches(f: Filter, value: tuple[Any, ...], row: tuple[Any, ...]) -> bool:
    kind = f.type
    if kind == "token":
        system, code, text = row
        if f.modifier == "text":
            return str(value[1]).lower() in str(text or "").lower()
        want_system, want_code = index_key(value[0]), index_key(value[1])
        return (want_code is None or code == want_code) and (
            want_system is None or (system is None if want_system == "" else system == want_system))
    if kind == "string":
        text, held = index_key(normalize_string(value[0])), row[0]
        return held == text if f.modifier == "exact" else text in held if f.modifier == "contains" \
            else held.startswith(text)
    if kind == "uri":
        text, held = index_key(value[0]), row[0]
        return held.startswith(text) if f.modifier == "below" else text.startswith(held) \
            if f.modifier == "above" else held == text
    if kind == "date":
        return _date(value, row)
    if kind == "reference":
        target_type, target_id, url = row
        rtype, rid, want_url = value
        return url == want_url if rid is None else target_id == index_key(rid) and (not rtype or target_type == rtype)
    if kind == "quantity":
        number, system, code, unit = row
        prefix, want, want_system, want_code = value
        return _number(prefix, want, number) and (want_code is None or code == want_code or (
            want_system is None and code is None and unit == want_code)) and (
            want_system is None or system == want_system)
    return _number(value[0], value[1], row[0])  # number


def _number(prefix: str, want: float, held: float | None) -> bool:
    if held is None:
        return False
    if prefix in ("eq", "ap", "ne"):  # search.html#number: the value's implicit precision
        text = repr(want)
        decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 0
        half = 0.5 if float(want).is_integer() else 0.5 * 10 ** -decimals
        inside = want - half <= held < want + half
        return not inside if prefix == "ne" else inside
    return {"gt": held > want, "sa": held > want, "lt": held < want, "eb": held < want, "ge": held >= want,
            "le": held <= want}[prefix]


def _date(value: tuple[Any, ...], row: tuple[Any, ...]) -> bool:
    prefix, low, high = value
    held_low, held_high = row
    return {"eq": held_low >= low and held_high <= high, "ne": held_low < low or held_high > high,
            "gt": held_high > high, "lt": held_low < low, "ge": held_high >= low, "le": held_low <= high,
            "sa": held_low > high, "eb": held_high < low}.get(prefix, held_low <= high and held_high >= low)
