"""Loading FHIR files into the store: JSON resources, Bundles and NDJSON.

Every resource read is either loaded or reported with its file, place and the validator's
issues, so read = loaded + rejected, always. When the store checks references, a resource whose
references do not resolve after its batch is offered again once everything else is loaded
(files need no particular order: Observation.ndjson may come before Patient.ndjson) and
rejected only if they still do not.
"""
from __future__ import annotations

import collections
import pathlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import FhirError, Issue
from adapter.fhir.validation import validate
from adapter.store.repository import Loadable, Repository

__all__ = ["Rejection", "LoadReport", "read_resources", "load_files"]


@dataclass(frozen=True)
class Rejection:
    file: str
    where: str  # "line 3" (NDJSON), "entry[2]" (Bundle) or "" (a single resource)
    issues: tuple[Issue, ...]

    def __str__(self) -> str:
        place = f"{self.file}{' ' + self.where if self.where else ''}"
        return "\n".join(f"{place}: {i.expression or '-'}: {i.diagnostics}" for i in self.issues)


@dataclass
class LoadReport:
    read: int = 0
    loaded: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.read} read, {self.loaded} loaded, {len(self.rejected)} rejected"


def _from_document(doc: Any, file: str, where: str) -> Iterator[tuple[str, str, Any]]:
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        for i, entry in enumerate(doc.get("entry") or []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            yield file, f"{where}entry[{i}]", resource
    else:
        yield file, where.rstrip(" "), doc


def read_resources(path: pathlib.Path) -> Iterator[tuple[str, str, Any]]:
    """(file, place, resource or FhirError) for every resource in a file, in order."""
    file = str(path)
    if path.suffix == ".ndjson":
        with path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield from _from_document(jsonio.parse(line), file, f"line {number} ")
                except FhirError as error:
                    yield file, f"line {number}", error
        return
    try:
        doc = jsonio.parse(path.read_bytes())
    except FhirError as error:
        yield file, "", error
        return
    yield from _from_document(doc, file, "")


def _files(paths: list[pathlib.Path]) -> Iterator[pathlib.Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".json", ".ndjson"))
        else:
            yield path


class _Places:
    """(file, place) of the last resources handed to the store, by position: the store's writer
    runs at most a few batches behind the reader, so a window of them is enough."""

    def __init__(self, window: int) -> None:
        self._recent: collections.deque[tuple[str, str]] = collections.deque(maxlen=window)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, file: str, where: str) -> None:
        with self._lock:
            self._recent.append((file, where))
            self._count += 1

    def __getitem__(self, position: int) -> tuple[str, str]:
        with self._lock:
            return self._recent[position - (self._count - len(self._recent))]


def load_files(repo: Repository, paths: list[pathlib.Path], batch_size: int = 1000) -> LoadReport:
    """Validate and load every resource in the files; invalid ones are reported, not loaded."""
    report = LoadReport()
    places = _Places(6 * batch_size)  # the store's queue holds 2 batches, its writer 1
    deferred: list[tuple[tuple[str, str], list[Loadable], list[Any]]] = []

    def defer(position: int, group: list[Loadable], why: list[Any]) -> None:
        deferred.append((places[position], group, why))

    def accepted() -> Iterator[dict[str, Any]]:
        for path in _files(paths):
            for file, where, item in read_resources(path):
                report.read += 1
                if isinstance(item, FhirError):
                    report.rejected.append(Rejection(file, where, tuple(item.issues)))
                    continue
                issues = validate(item)
                if issues:
                    report.rejected.append(Rejection(file, where, tuple(issues)))
                    continue
                if not item.get("id"):
                    item = {**item, "id": str(uuid.uuid4())}
                places.add(file, where)
                yield item

    report.loaded = repo.load(accepted(), batch_size=batch_size, refused=defer)
    while deferred:  # again, now that the rest is in, until a round resolves nothing more
        offered, deferred[:] = list(deferred), []
        places = _Places(len(offered) + 1)
        for (file, where), _, _ in offered:
            places.add(file, where)
        report.loaded += repo.load([group for _, group, _ in offered], batch_size=batch_size, refused=defer)
        if len(deferred) == len(offered):
            report.rejected.extend(Rejection(file, where, tuple(d.issue() for d in why))
                                   for (file, where), _, why in deferred)
            break
    return report
