"""Running a mapping over export files: streaming, in order, optionally across processes.

Rows are read one at a time, checked for duplicates, then mapped, validated and (when a store
is given) written in batches; results come back in file order, a bounded number in flight, so
memory does not grow with the file. Every row read ends accepted or rejected.

Mapping is pure: the workers map, validate and extract each resource's index rows (`prepare`,
the writer's costliest part, done where there are cores), and hand the results back; the one
write stage (write_stage.py) writes them and owns what comes back unresolved.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import multiprocessing
import os
import pathlib
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir.extract import Indexed, extract
from adapter.mapping.engine import RecordResult, Rejection, map_record
from adapter.mapping.scopes import read_source, unique_key
from adapter.mapping.lookups import record_histories
from adapter.mapping.sources import SourceError, SourceRow
from adapter.mapping.spec import MappingSpec
from adapter.mapping.tally import STATUSES, Tally
from adapter.workers import die_with_parent

__all__ = ["MappingReport", "records", "CHUNK"]

CHUNK = 200  # rows per task sent to a worker process
KEEP_REJECTIONS = 10_000  # kept in memory for the report; all are counted (and quarantined)


@dataclass
class MappingReport:
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0  # nothing of the row written
    rows_partly: int = 0  # partly accepted: some of its resources written, some rejected
    cells_rejected: int = 0  # rejections (each names one cell, or a resource that failed validation)
    rows_warned: int = 0  # accepted with a warning (a value that made nothing)
    writes: int = 0  # resources written (or mapped): one resource may be written by many rows
    # distinct resources, {type: {status: n}} (tally.STATUSES), complete once the run is over
    by_type: dict[str, collections.Counter[str]] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    warnings: list[Rejection] = field(default_factory=list)
    fired: collections.Counter[int] = field(default_factory=collections.Counter)
    seen: set[str] = field(default_factory=set)
    seconds: float = 0.0
    tally: Tally | None = field(default=None, repr=False)

    def add(self, result: RecordResult) -> None:
        self.rows_read += 1
        if result.kept:
            if result.partly:
                self.rows_partly += 1
            else:
                self.rows_accepted += 1
            self.writes += len(result.written)
            if self.tally is None:
                self.tally = Tally()
            self.tally.add(result.written)
            if result.warnings:
                self.rows_warned += 1
                self.warnings.extend(result.warnings[:max(KEEP_REJECTIONS - len(self.warnings), 0)])
        else:
            self.rows_rejected += 1
        if result.rejections:
            self.cells_rejected += len(result.rejections)
            room = KEEP_REJECTIONS - len(self.rejections)
            self.rejections.extend(result.rejections[:max(room, 0)])
        self.fired.update(result.fired)
        self.seen |= result.seen

    def count_written(self, written: list[tuple[str, str, str]]) -> None:
        """Resources written outside any row (the catalogue's CodeSystem)."""
        if self.tally is None:
            self.tally = Tally()
        self.tally.add(written)
        self.writes += len(written)

    @property
    def rejected_any(self) -> bool:
        """Something was rejected: a row, or a cell of a partly accepted one."""
        return bool(self.rows_rejected or self.rows_partly)

    def finish(self) -> None:
        if self.tally is not None:
            self.by_type = self.tally.counts()
            self.tally.close()
            self.tally = None

    @property
    def resources(self) -> int:
        """Distinct resources."""
        return sum(sum(c.values()) for c in self.by_type.values())

    def statuses(self) -> collections.Counter[str]:
        return sum(self.by_type.values(), collections.Counter())

    def summary(self) -> str:
        rate = f", {self.resources / self.seconds:,.0f} resources/s" if self.seconds > 0 else ""
        statuses = self.statuses()
        made = ", ".join(f"{statuses[s]} {s}" for s in reversed(STATUSES) if s != "mapped") \
            if statuses.keys() - {"mapped"} else ""
        warned = f", {self.rows_warned} with warnings" if self.rows_warned else ""
        partly = f", {self.rows_partly} partly accepted" if self.rows_partly else ""
        cells = f" ({self.cells_rejected} rejections)" if self.cells_rejected else ""
        return (f"{self.rows_read} rows read: {self.rows_accepted} accepted{warned}{partly}, "
                f"{self.rows_rejected} rejected{cells}; "
                f"{self.resources} resources{': ' + made if made else ''} ({self.writes} writes{rate})")


class _Duplicates:
    """Within one run (all its files), the first place of each record identity (8-byte digests:
    ~100 bytes a row)."""

    def __init__(self, spec: MappingSpec) -> None:
        self.spec = spec
        self.first: dict[bytes, tuple[str, int]] = {}

    def check(self, row: SourceRow) -> SourceRow | RecordResult:
        """The row, with its key (computed once: the Provenance reuses it), or its rejection."""
        key = unique_key(self.spec, row)
        row = dataclasses.replace(row, key=key)
        if not key[0]:
            return row  # no record key: map_record rejects it, naming the key column
        digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
        file, line = self.first.setdefault(digest, (row.file, row.line))
        if (file, line) == (row.file, row.line):
            return row
        where = f"line {line}" if file == row.file else f"{pathlib.Path(file).name} line {line}"
        if row.sheet:
            where = f"row {line}" if file == row.file else f"{pathlib.Path(file).name} row {line}"
        table = self.spec.table(row.table)
        column = table.unique[0] if "unique" in self.spec.source or len(self.spec.tables) > 1 \
            else table.record_key
        label = column if self.spec.tabular or column.startswith("$.") else f"$.{column}"
        header, cell = (row.places or {}).get(label, (label, ""))
        return RecordResult(row.file, row.line, rejections=[Rejection(
            row.file, row.line, header, key[0], self.spec.where_key(table.at + ("unique",)),
            f"duplicate of {where}", cell=cell)])


def _rows(spec: MappingSpec, files: Iterable[str | pathlib.Path]) -> Iterator[SourceRow | RecordResult]:
    """Rows to map, or rows already decided (unreadable, duplicate)."""
    duplicates = _Duplicates(spec)
    for path in files:
        for row in read_source(spec, path):
            if isinstance(row, SourceError):
                yield RecordResult(row.file, row.line, rejections=[
                    Rejection(row.file, row.line, "", "", "", row.reason,
                              cell=f"{row.sheet}!{row.line}:{row.line}" if row.sheet else "")])
                continue
            yield duplicates.check(row)


@dataclass
class _Job:
    spec: MappingSpec
    key: bytes
    recorded: str
    check: bool
    prepare: bool  # extract each resource's index rows here, for the write stage
    histories: dict[str, list[Any]] | None = None  # lookups.record_histories, when the spec looks up


def _map_rows(job: _Job, rows: list[SourceRow]) -> list[RecordResult]:
    results = [map_record(job.spec, job.key, row, job.recorded, job.check, job.histories) for row in rows]
    if job.prepare:
        for result in results:
            result.prepared = [Indexed(r, extract(r)) for r in result.resources]
    return results


_WORKER: dict[str, Any] = {}




def _map_chunk(rows: list[SourceRow]) -> list[RecordResult]:
    return _map_rows(_WORKER["job"], rows)


def records(spec: MappingSpec, files: Iterable[str | pathlib.Path], key: bytes, recorded: str,
            workers: int = 1, check: bool = True, prepare: bool = False) -> Iterator[tuple[SourceRow | None, RecordResult]]:
    """(row, result) for every row of the files, in file order; `workers` > 1 maps in processes.
    `prepare`: each result's resources also come with their index rows (`result.prepared`)."""
    histories = None
    if spec.looked_up:  # a first pass: each record's visits, with the fields rules look up
        files = list(files)
        histories = record_histories(spec, files)
    job = _Job(spec, key, recorded, check, prepare, histories)
    if workers <= 1:
        pending: list[SourceRow | RecordResult] = []

        def flush() -> Iterator[tuple[SourceRow | None, RecordResult]]:
            mapped = iter(_map_rows(job, [r for r in pending if isinstance(r, SourceRow)]))
            for item in pending:
                yield (None, item) if isinstance(item, RecordResult) else (item, next(mapped))
            pending.clear()

        for item in _rows(spec, files):
            pending.append(item)
            if len(pending) >= CHUNK:
                yield from flush()
        yield from flush()
        return
    _WORKER.clear()
    _WORKER["job"] = job
    context = multiprocessing.get_context("fork")  # workers inherit the compiled spec
    in_flight: collections.deque[tuple[list[SourceRow | RecordResult], Future[list[RecordResult]]]] = \
        collections.deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        def drain(limit: int) -> Iterator[tuple[SourceRow | None, RecordResult]]:
            while len(in_flight) > limit:
                chunk, future = in_flight.popleft()
                mapped = iter(future.result())
                for item in chunk:
                    yield (None, item) if isinstance(item, RecordResult) else (item, next(mapped))

        chunk: list[SourceRow | RecordResult] = []
        for item in _rows(spec, files):
            chunk.append(item)
            if len(chunk) >= CHUNK:
                in_flight.append((chunk, pool.submit(_map_chunk, [r for r in chunk if isinstance(r, SourceRow)])))
                chunk = []
                yield from drain(2 * workers)  # bounded: at most 2 chunks per worker in flight
        if chunk:
            in_flight.append((chunk, pool.submit(_map_chunk, [r for r in chunk if isinstance(r, SourceRow)])))
        yield from drain(0)


def timed(report: MappingReport, started: float) -> MappingReport:
    report.seconds = time.perf_counter() - started
    report.finish()
    return report
