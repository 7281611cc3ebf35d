"""The one write stage of an ingest: what the workers mapped (mapping is pure: run.py), written
in batches through the store's one write path, in a window of rows at a time, so that memory
stays bounded whatever the file. It owns the references that do not resolve yet: a row whose
target is another row's, not written yet, keeps its resources and is offered again once the rest
is written, until nothing more resolves; what still does not is rejected with the reason.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from adapter.fhir.extract import Indexed, extract
from adapter.mapping.engine import RecordResult, Rejection
from adapter.mapping.sources import SourceRow
from adapter.store.repository import Loadable, Repository, StoredResource

__all__ = ["WriteStage"]

Pair = tuple[SourceRow | None, RecordResult]
WINDOW = 400  # rows written at a time (one load: its batches, its writer thread), while the workers map the next


class WriteStage:
    def __init__(self, store: Repository, batch_size: int = 1000, window: int = WINDOW) -> None:
        self.store, self.batch_size, self.window = store, batch_size, window
        self.deferred: list[Pair] = []

    def run(self, mapped: Iterable[Pair]) -> Iterator[Pair]:
        """Every (row, result), once written or rejected: in file order, but for the rows whose
        references waited, which come last."""
        iterator = iter(mapped)
        while window := list(itertools.islice(iterator, self.window)):
            self._write([result for _, result in window])
            for row, result in window:
                if result.dangling:
                    self.deferred.append((row, result))
                else:
                    yield row, result
        yield from self._offer_again()

    def _offer_again(self) -> Iterator[Pair]:
        """The rest is written: the waiting rows again, while any of them resolves."""
        while self.deferred:
            waiting = self.deferred
            self._write([result for _, result in waiting])
            self.deferred = [(row, result) for row, result in waiting if result.dangling]
            yield from ((row, result) for row, result in waiting if not result.dangling)
            if len(self.deferred) == len(waiting):
                for row, result in self.deferred:  # rejected: a row whose references never resolved
                    result.rejections, result.dangling, result.resources = \
                        result.rejections + result.dangling, [], []
                    result.partly = False
                    yield row, result
                self.deferred = []

    def _write(self, results: list[RecordResult]) -> None:
        """Each result's resources (one group each, never split across transactions); a result
        whose references do not resolve keeps them and gets `dangling`."""
        writing = [result for result in results if result.resources]
        groups: list[Loadable | list[Loadable]] = [
            list(result.prepared) or [Indexed(r, extract(r)) for r in result.resources] for result in writing]
        outcomes: list[StoredResource] = []
        refused: dict[int, list[Any]] = {}
        self.store.load(iter(groups), batch_size=self.batch_size, analyze=False,  # analysed once, at the end
                        volatile={"Provenance": ("recorded",)}, outcomes=outcomes,
                        refused=lambda position, _group, why: refused.__setitem__(position, why))
        done = iter(outcomes)
        for position, result in enumerate(writing):
            if position in refused:
                lost = tuple(f"{r['resourceType']}/{r['id']}" for r in result.resources)  # the row's group, whole
                result.dangling = [Rejection(result.file, result.line, d.expression, d.reference, "", d.reason, lost)
                                   for d in refused[position]]
                continue
            result.dangling = []
            result.written = [(s.resource_type, s.id, _status(s))
                              for s in itertools.islice(done, len(result.resources))]
            result.resources, result.prepared = [], []


def _status(stored: StoredResource) -> str:
    return "created" if stored.created else "unchanged" if stored.unchanged else "updated"
