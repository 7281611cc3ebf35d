"""A repository in front of another: every call goes on to `inner`, unchanged, unless a
subclass changes it. The handles that narrow a store (a client's scopes and site:
adapter/auth/guard.py; an exchange policy: adapter/exchange/view.py) override only what they
change, so a method added to the interface reaches the store through them without a line of
theirs, and never passes by them unchecked where they do check."""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from adapter.fhir.search import SearchRequest
from adapter.store.repository import (
    HistoryPage, Loadable, Refused, Repository, SearchPage, StoredResource, Transaction,
)

__all__ = ["Forwarding"]


class Forwarding(Repository):
    def __init__(self, inner: Repository) -> None:
        self.inner = inner

    def create(self, resource: dict[str, Any]) -> StoredResource:
        return self.inner.create(resource)

    def update(self, resource: dict[str, Any], if_match: int | None = None) -> StoredResource:
        return self.inner.update(resource, if_match)

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return self.inner.delete(resource_type, resource_id)

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        return self.inner.read(resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource:
        return self.inner.vread(resource_type, resource_id, version_id)

    def history(self, resource_type: str | None = None, resource_id: str | None = None,
                since: str | None = None, count: int = 20, cursor: int | None = None) -> HistoryPage:
        return self.inner.history(resource_type, resource_id, since, count, cursor)

    def search(self, request: SearchRequest) -> SearchPage:
        return self.inner.search(request)

    def scan(self, request: SearchRequest, patients: list[str] | str | None = None,
             at_once: bool = False) -> Iterator[list[StoredResource]]:
        return self.inner.scan(request, patients, at_once)

    def everything(self, patient_id: str, types: tuple[str, ...], since: str | None, count: int,
                   cursor: tuple[Any, ...] | None) -> SearchPage:
        return self.inner.everything(patient_id, types, since, count, cursor)

    def transaction(self) -> AbstractContextManager[Transaction]:
        return self.inner.transaction()

    def load(self, resources: Iterable[Loadable | list[Loadable]], batch_size: int = 1000,
             analyze: bool = True, volatile: Mapping[str, tuple[str, ...]] | None = None,
             outcomes: list[StoredResource] | None = None, refused: Refused | None = None) -> int:
        return self.inner.load(resources, batch_size, analyze, volatile, outcomes, refused)

    def analyze(self) -> None:
        self.inner.analyze()

    def permitted(self, types: tuple[str, ...], permission: str) -> tuple[str, ...]:
        return self.inner.permitted(types, permission)

    def require(self, resource_type: str, permissions: str, what: str) -> None:
        self.inner.require(resource_type, permissions, what)

    def screen(self, request: SearchRequest) -> None:
        self.inner.screen(request)

    def view(self) -> Hashable:
        return self.inner.view()

    def generation(self) -> Hashable:
        return self.inner.generation()

    def derived(self) -> dict[Any, Any]:
        return self.inner.derived()

    def reopen(self) -> Repository:
        return self.inner.reopen()

    def close(self) -> None:
        self.inner.close()
