"""Running a mapping over export files: streaming, in order, optionally across processes.

Rows are read one at a time, checked for duplicates, mapped and validated (in worker processes
when asked: validation is most of the cost), and handed on in file order, a bounded number in
flight, so memory does not grow with the file. Every row read ends accepted or rejected.
"""
from __future__ import annotations

import collections
import hashlib
import multiprocessing
import pathlib
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from adapter.mapping.engine import RecordResult, Rejection, map_record, read_source, unique_key
from adapter.mapping.sources import SourceError, SourceRow
from adapter.mapping.spec import MappingSpec

__all__ = ["MappingReport", "records", "CHUNK"]

CHUNK = 200  # rows per task sent to a worker process
KEEP_REJECTIONS = 10_000  # kept in memory for the report; all are counted (and quarantined)


@dataclass
class MappingReport:
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    resources: int = 0
    by_type: collections.Counter[str] = field(default_factory=collections.Counter)
    rejections: list[Rejection] = field(default_factory=list)
    fired: collections.Counter[int] = field(default_factory=collections.Counter)
    seen: set[str] = field(default_factory=set)
    seconds: float = 0.0

    def add(self, result: RecordResult) -> None:
        self.rows_read += 1
        if result.accepted:
            self.rows_accepted += 1
            self.resources += len(result.resources)
            self.by_type.update(r["resourceType"] for r in result.resources)
        else:
            self.rows_rejected += 1
            room = KEEP_REJECTIONS - len(self.rejections)
            self.rejections.extend(result.rejections[:max(room, 0)])
        self.fired.update(result.fired)
        self.seen |= result.seen

    def summary(self) -> str:
        rate = f", {self.resources / self.seconds:,.0f} resources/s" if self.seconds > 0 else ""
        return (f"{self.rows_read} rows read: {self.rows_accepted} accepted, {self.rows_rejected} rejected; "
                f"{self.resources} resources{rate}")


class _Duplicates:
    """Within one run, the first line of each record identity (8-byte digests: ~100 bytes a row)."""

    def __init__(self, spec: MappingSpec) -> None:
        self.spec = spec
        self.first: dict[bytes, int] = {}

    def check(self, row: SourceRow) -> RecordResult | None:
        key = unique_key(self.spec, row)
        if not key[0]:
            return None  # no record key: map_record rejects it, naming the key column
        digest = hashlib.blake2b("\x1f".join((row.file, *key)).encode(), digest_size=8).digest()
        first = self.first.setdefault(digest, row.line)
        if first == row.line:
            return None
        column = self.spec.source.get("unique", [self.spec.source["record_key"]])[0]
        label = column if self.spec.tabular or column.startswith("$.") else f"$.{column}"
        return RecordResult(row.file, row.line, rejections=[Rejection(
            row.file, row.line, label, key[0], self.spec.where_key(("source", "unique")),
            f"duplicate of line {first}")])


_WORKER: dict[str, Any] = {}


def _map_chunk(rows: list[SourceRow]) -> list[RecordResult]:
    spec, key, recorded, check = _WORKER["args"]
    return [map_record(spec, key, row, recorded, check) for row in rows]


def _rows(spec: MappingSpec, files: Iterable[str | pathlib.Path]) -> Iterator[SourceRow | RecordResult]:
    """Rows to map, or rows already decided (unreadable, duplicate)."""
    duplicates = _Duplicates(spec)
    for path in files:
        for row in read_source(spec, path):
            if isinstance(row, SourceError):
                yield RecordResult(row.file, row.line, rejections=[
                    Rejection(row.file, row.line, "", "", "", row.reason)])
                continue
            yield duplicates.check(row) or row


def records(spec: MappingSpec, files: Iterable[str | pathlib.Path], key: bytes, recorded: str,
            workers: int = 1, check: bool = True) -> Iterator[tuple[SourceRow | None, RecordResult]]:
    """(row, result) for every row of the files, in file order; `workers` > 1 maps in processes."""
    if workers <= 1:
        for item in _rows(spec, files):
            if isinstance(item, RecordResult):
                yield None, item
            else:
                yield item, map_record(spec, key, item, recorded, check)
        return
    _WORKER["args"] = (spec, key, recorded, check)
    context = multiprocessing.get_context("fork")  # workers inherit the compiled spec
    pending: collections.deque[tuple[list[SourceRow | RecordResult], Future[list[RecordResult]]]] = \
        collections.deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        def drain(limit: int) -> Iterator[tuple[SourceRow | None, RecordResult]]:
            while len(pending) > limit:
                chunk, future = pending.popleft()
                mapped = iter(future.result())
                for item in chunk:
                    yield (None, item) if isinstance(item, RecordResult) else (item, next(mapped))

        chunk: list[SourceRow | RecordResult] = []
        for item in _rows(spec, files):
            chunk.append(item)
            if len(chunk) >= CHUNK:
                pending.append((chunk, pool.submit(_map_chunk, [r for r in chunk if isinstance(r, SourceRow)])))
                chunk = []
                yield from drain(2 * workers)  # bounded: at most 2 chunks per worker in flight
        if chunk:
            pending.append((chunk, pool.submit(_map_chunk, [r for r in chunk if isinstance(r, SourceRow)])))
        yield from drain(0)


def timed(report: MappingReport, started: float) -> MappingReport:
    report.seconds = time.perf_counter() - started
    return report
