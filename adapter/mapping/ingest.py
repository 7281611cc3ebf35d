"""Ingest (map, validate, store) and translate (map, validate, print) site exports; rejected
rows go to a quarantine file in the source's own format, to be fixed and ingested again."""
from __future__ import annotations

import csv
import io
import os
import pathlib
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any, BinaryIO

from adapter.fhir import jsonio
from adapter.fhir.extract import Indexed, extract
from adapter.fhir.validation import validate
from adapter.mapping.catalogue import catalogue_resources
from adapter.mapping.concept_maps import concept_map
from adapter.mapping.site_local import site_definitions
from adapter.mapping.engine import RecordResult
from adapter.mapping.reading import check_files
from adapter.mapping.scopes import read_source
from adapter.mapping.run import MappingReport, records, timed
from adapter.mapping.write_stage import WriteStage
from adapter.mapping.sources import SourceError, SourceRow
from adapter.mapping.spec import MappingSpec
from adapter.private import open_private, private_dir
from adapter.store.repository import Loadable, Repository, StoredResource

__all__ = ["ingest", "translate", "Quarantine", "now_recorded", "REJECTION_COLUMNS", "missing_definitions"]

REJECTION_COLUMNS = ["file", "row", "column", "value", "rule", "reason", "not_made", "cell"]


def now_recorded() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _cells(r: Any) -> list[Any]:
    """A rejection's (or warning's) line in rejections.csv and warnings.csv."""
    return [pathlib.Path(r.file).name, r.row, r.column, r.value, r.rule, r.reason, " ".join(r.not_made), r.cell]


class Quarantine:
    """`rejections.csv` (file,row,column,value,rule,reason,not_made) and, per source file, the
    rejected and partly accepted rows as they were (same header, encoding and delimiter; NDJSON
    lines for JSON sources), with the rows of their record they look values up in; and
    `warnings.csv` (the same columns): values of accepted rows that made nothing."""

    def __init__(self, spec: MappingSpec, directory: pathlib.Path) -> None:
        self.spec, self.directory = spec, directory
        private_dir(directory)  # rejected rows keep their MRNs and birth dates
        self._report = open_private(directory / "rejections.csv", encoding="utf-8", newline="")
        self._writer = csv.writer(self._report, lineterminator="\n")
        self._writer.writerow(REJECTION_COLUMNS)
        self._rows: dict[str, tuple[Any, Any]] = {}
        self.files: list[pathlib.Path] = [directory / "rejections.csv"]
        self._warnings: Any = None
        self._written: set[tuple[str, int]] = set()
        self._context: set[tuple[str, int]] = set()  # rows a quarantined row reads values from

    def add(self, row: SourceRow | None, result: RecordResult) -> None:
        self._writer.writerows(_cells(r) for r in result.rejections)
        if row is None and result.rejections and result.rejections[0].reason.startswith("duplicate"):
            return  # the same record is kept at its first line
        if row is not None:
            self._write_row(row)
            self._written.add((row.file, row.line))
            self._context |= result.looked

    def warn(self, result: RecordResult) -> None:
        if self._warnings is None:  # opened at the first warning: most ingests have none
            self.files.append(self.directory / "warnings.csv")
            self._warnings_file = open_private(self.files[-1], encoding="utf-8", newline="")
            self._warnings = csv.writer(self._warnings_file, lineterminator="\n")
            self._warnings.writerow(REJECTION_COLUMNS)
        self._warnings.writerows(_cells(w) for w in result.warnings)

    def _write_row(self, row: SourceRow) -> None:
        if row.sheet:  # a workbook's row, maybe one visit of a wide one: rejections.csv names its cells,
            return  # which the site fixes in its workbook and sends again (it re-ingests in place)
        source = pathlib.Path(row.file)
        if row.file not in self._rows:
            path = self.directory / f"{source.stem}.rejected{source.suffix}"
            self.files.append(path)
            handle: Any
            if self.spec.tabular:
                handle = open_private(path, encoding=self.spec.source.get("encoding", "utf-8"), newline="")
                writer = csv.writer(handle, delimiter=self.spec.source.get("delimiter", ","), lineterminator="\n")
                writer.writerow(list(row.values))
            else:
                handle, writer = open_private(path, "wb"), None
            self._rows[row.file] = (handle, writer)
        handle, writer = self._rows[row.file]
        if writer is not None:
            writer.writerow(list(row.values.values()))
        else:
            handle.write(jsonio.dumps(row.values) + b"\n")

    def _write_context(self) -> None:
        """The rows the quarantined ones looked values up in (a dose row's screening weight),
        appended as they are, so that the fixed file re-ingests alone (they re-ingest unchanged)."""
        wanted = self._context - self._written
        for file in sorted({file for file, _ in wanted}):
            for row in read_source(self.spec, file):
                if not isinstance(row, SourceError) and (row.file, row.line) in wanted:
                    self._write_row(row)

    def close(self) -> None:
        if self._context - self._written:
            self._write_context()
        self._report.close()
        if self._warnings is not None:
            self._warnings_file.close()
        for handle, _ in self._rows.values():
            handle.close()


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(unit=" rows", desc="mapping", leave=False)


def _run(spec: MappingSpec, files: Iterable[str | pathlib.Path], key: bytes, recorded: str, workers: int,
         quarantine: pathlib.Path | None, progress: bool, report: MappingReport,
         store: Repository | None = None, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
    jail = Quarantine(spec, quarantine) if quarantine else None
    bar = _progress(progress)

    def done(row: SourceRow | None, result: RecordResult) -> Iterator[list[dict[str, Any]]]:
        report.add(result)
        if result.kept:
            if jail is not None and result.warnings:
                jail.warn(result)
            if result.resources:
                yield result.resources
        if jail is not None and result.rejections:  # a partly accepted row too: fixed, it re-ingests in place
            jail.add(row, result)

    try:
        mapped = records(spec, files, key, recorded, workers, prepare=store is not None)
        pairs = WriteStage(store, batch_size).run(mapped) if store is not None else mapped
        for row, result in pairs:
            if bar is not None:
                bar.update()
            yield from done(row, result)
    finally:
        if bar is not None:
            bar.close()
        if jail is not None:
            jail.close()


def _write_catalogue(spec: MappingSpec, repo: Repository, report: MappingReport) -> None:
    """The catalogue's own CodeSystem, which codes of the data may be in, and the mapping's
    ConceptMap (its code maps, concept_maps.py): written (or left unchanged) with every ingest,
    validated like every resource, so that what the store serves is what mapped its data."""
    made = [*catalogue_resources(spec.catalogue), concept_map(spec)]
    if spec.site_entry is not None:  # a site declared beside its mapping: its Organization and Location
        made += site_definitions(spec.catalogue, spec.site_entry)
    for resource in made:
        issues = validate(resource)
        if issues:  # the catalogue and the mapping are ours: a defect, not a site's bad row
            raise ValueError(f"catalogue {resource['resourceType']}: {issues[0].expression}: {issues[0].diagnostics}")
    outcomes: list[StoredResource] = []
    group: list[Loadable] = [Indexed(r, extract(r)) for r in made]
    repo.load([group], analyze=False, outcomes=outcomes)
    report.count_written([(s.resource_type, s.id, "created" if s.created else "unchanged" if s.unchanged
                           else "updated") for s in outcomes])


def missing_definitions(spec: MappingSpec, repo: Repository) -> str | None:
    """Why the store lacks the protocol's definitions the mapped resources refer to (the
    catalogue's ResearchStudy, the site's Organization), with the command that loads them; None
    when they are there."""
    # The study and the site's Organization (each row's Provenance names it): a store loaded
    # with an older protocol has the study but not the Organization.
    wanted = [("ResearchStudy", spec.catalogue.study)] + (
        [("Organization", spec.site)] if spec.site in spec.catalogue.sites else [])  # as engine._site_agent
    missing = [f"{rtype}/{rid}" for rtype, rid in wanted if repo.current(rtype, rid) is None]
    if not missing:
        return None
    protocol = os.path.normpath(pathlib.Path(spec.catalogue.path).parent / spec.catalogue.data["catalogue"]["protocol"])
    return (f"the store has no {' and no '.join(missing)}, which the mapped resources refer to (with reference "
            f"checks on, their rows are rejected as unresolved): load the protocol's definitions (again, if an "
            f"older protocol was loaded): fhir-adapter protocol load {protocol} --db ...")


def ingest(spec: MappingSpec, files: Iterable[str | pathlib.Path], repo: Repository, key: bytes,
           recorded: str | None = None, workers: int = 1, quarantine: pathlib.Path | None = None,
           progress: bool = False, batch_size: int = 1000) -> MappingReport:
    """Map, validate and store; a row's resources are written in one transaction, or not at all.
    A file that cannot be read as the mapping says (a workbook that is none) is one
    SourceFileError, before anything is stored."""
    files = list(files)
    check_files(spec, files)
    report, started = MappingReport(), time.perf_counter()
    _write_catalogue(spec, repo, report)
    for _ in _run(spec, files, key, recorded or now_recorded(), workers, quarantine, progress, report,
                  store=repo, batch_size=batch_size):
        pass  # written by whoever mapped them (this process, or each worker)
    if report.writes >= 1000:
        repo.analyze()
    return timed(report, started)


def translate(spec: MappingSpec, files: Iterable[str | pathlib.Path], out: BinaryIO | io.BytesIO, key: bytes,
              recorded: str | None = None, workers: int = 1, quarantine: pathlib.Path | None = None) -> MappingReport:
    """Map and validate, write the FHIR as NDJSON to `out`; nothing is stored (a dry run)."""
    files = list(files)
    check_files(spec, files)
    report, started = MappingReport(), time.perf_counter()
    for group in _run(spec, files, key, recorded or now_recorded(), workers, quarantine, False, report):
        for resource in group:
            out.write(jsonio.dumps(resource) + b"\n")
    return timed(report, started)
