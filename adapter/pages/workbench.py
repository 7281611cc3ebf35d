"""The mapping workbench: a site mapping over a file (an upload, or one of the repository's
site fixtures chosen by name from a fixed list), as a dry run: rows accepted, partly accepted
and rejected with each rejection's row, column, value, rule and reason; the coverage; and a
child x visit grid of what would be made. Nothing is stored: the dry run never gets a store.
"""
from __future__ import annotations

import collections
import io
import logging
import pathlib
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir import jsonio
from adapter.mapping.spec import SITE_SPECS
from adapter.mapping.coverage import Coverage, coverage
from adapter.mapping.fields import fields_of
from adapter.mapping.identifiers import direct_identifiers
from adapter.mapping.spec import load_mapping, shipped_mappings
from adapter.pages.protocol import spec as protocol_spec
from adapter.protocol.schedule import protocol_visit, visit_plan
from adapter.yamlspec import SpecError

__all__ = ["mappings", "fixtures", "DryRun", "dry_run", "GRID_ROWS"]

log = logging.getLogger("adapter.pages")
FIXTURES = SITE_SPECS.parent.parent / "fixtures" / "sites"
GRID_ROWS = 200  # children shown in the grid; the counts above it cover every row
# Rows of an upload mapped: ~600 rows/s here (1,000 of site A's in 1.7 s), so a page answers in
# seconds, well inside the worker's time limit, whatever the file (10 MB of site A is 66,000
# rows, ~2 minutes); the whole file: `fhir-adapter translate --dry-run`.
MAX_ROWS = 3000
_SUFFIX = {"csv": ".csv", "json": ".json", "ndjson": ".ndjson", "xlsx": ".xlsx", "xls": ".xls"}


def mappings() -> list[str]:
    """The site mappings, by name (site-a, ...): the only ones the page accepts."""
    return [p.stem for p in shipped_mappings()]


def fixtures() -> dict[str, pathlib.Path]:
    """The site fixtures' exports, by name ("site-a/export.csv"): a fixed list, so a name from
    the form never becomes a path (no traversal), and a checkout without fixtures lists none."""
    return {f"{p.parent.name}/{p.name}": p for p in sorted(FIXTURES.glob("site-*/export.*"))}


@dataclass
class DryRun:
    mapping: str
    source: str  # the fixture's name or the uploaded file's
    error: str = ""  # why nothing could be shown
    found: Coverage | None = None
    visits: list[str] = field(default_factory=list)
    grid: dict[str, dict[str, int]] = field(default_factory=dict)  # patient -> visit -> resources made
    children: int = 0
    types: dict[str, int] = field(default_factory=dict)
    cut: tuple[int, int] | None = None  # (rows mapped, rows in the upload) when it was cut
    # Columns whose rejected values are not shown: the mapping's direct identifiers (an MRN, a
    # name) stay in the file, never on a page.
    withheld: set[str] = field(default_factory=set)


def dry_run(mapping: str, source: str, path: pathlib.Path | None = None, upload: bytes | None = None) -> DryRun:
    """Map `path` (a fixture) or `upload` (bytes) with the named mapping; never raises for a bad
    file or mapping: the error is the page's to show."""
    run = DryRun(mapping, source)
    if mapping not in mappings():
        run.error = f"unknown mapping {mapping!r}; choose one of {', '.join(mappings())}"
        return run
    try:
        spec = load_mapping(SITE_SPECS / f"{mapping}.yaml")
    except SpecError as error:
        run.error = "the mapping has problems: " + "; ".join(error.problems)
        return run
    out = io.BytesIO()
    try:
        with tempfile.TemporaryDirectory(prefix="workbench-") as folder:
            if upload is not None:  # the engine reads files: the upload goes to a private temp file
                # a workbook is not cut (its rows are not lines): the upload limit and the
                # workbook's own bounds (cells, sheets, bytes: workbooks.py) hold it
                if spec.source.get("format") in ("csv", "redcap", "ndjson"):
                    upload, run.cut = _first_rows(upload, MAX_ROWS, 1 if spec.tabular else 0)
                path = pathlib.Path(folder) / f"upload{_SUFFIX.get(spec.source.get('format', 'csv'), '.csv')}"
                path.write_bytes(upload)
            assert path is not None
            run.found = coverage(spec, [path], out)
            run.withheld = set(direct_identifiers(spec.data)) | {  # and birth dates, whole
                f for rule in spec.data["rules"] if "patient" in rule
                for f in fields_of(rule["patient"].get("birth_date"))}
    except Exception as error:  # a file of any shape may come: say why, never a 500
        log.info("workbench: %s on %s failed: %r", mapping, source, error)
        run.error = f"the file could not be read as {spec.source.get('format', 'csv')} for {mapping}: " \
                    f"{type(error).__name__}: {error}"
        return run
    _grid(run, out.getvalue())
    return run


def _first_rows(data: bytes, rows: int, header: int) -> tuple[bytes, tuple[int, int] | None]:
    """The `header` lines and the first `rows` lines after them (CSV rows, NDJSON documents), and
    (rows kept, rows in all) when there were more. By line: a quoted newline in the last kept
    row may cut it short, and then that row is rejected like any malformed one.

    Examples:
        >>> _first_rows(b"h\\n1\\n2\\n3\\n", 2, 1)
        (b'h\\n1\\n2\\n', (2, 3))
        >>> _first_rows(b"h\\n1\\n", 2, 1)
        (b'h\\n1\\n', None)
    """
    lines = header + rows
    kept = data.split(b"\n", lines)
    if len(kept) <= lines or not kept[lines].strip():
        return data, None
    total = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return b"\n".join(kept[:lines]) + b"\n", (rows, total - header)


def _grid(run: DryRun, ndjson: bytes) -> None:
    # Distinct resources, as an ingest stores them: one cell-product lot given on two rows is one
    # BiologicallyDerivedProduct written twice (80 rows of site A's export, 73 products).
    made = list({(r["resourceType"], r["id"]): r for r in
                 (jsonio.parse(line) for line in ndjson.splitlines() if line.strip())}.values())
    run.types = dict(sorted(collections.Counter(r["resourceType"] for r in made).items()))
    arms = {(r.get("individual") or {}).get("reference", ""): r.get("assignedArm", "")
            for r in made if r["resourceType"] == "ResearchSubject"}
    visit_of = {f"Encounter/{r['id']}": ((r.get("type") or [{}])[0].get("coding") or [{}])[0].get("code", "")
                for r in made if r["resourceType"] == "Encounter"}
    grid: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    order: dict[str, None] = {}
    for r in made:
        subject = (r.get("subject") or r.get("patient") or {}).get("reference", "")
        if r["resourceType"] == "Patient":
            grid[f"Patient/{r['id']}"]
            continue
        key = visit_of.get((r.get("encounter") or {}).get("reference", "")) or visit_of.get(f"Encounter/{r['id']}")
        if subject.startswith("Patient/") and key:
            visit = _protocol_visit(key, arms.get(subject, ""))
            order.setdefault(visit, None)
            grid[subject][visit] += 1
    run.visits = sorted(order, key=_visit_key)
    run.children = len(grid)
    run.grid = {p.split("/", 1)[1]: dict(c) for p, c in sorted(grid.items())[:GRID_ROWS]}


def _protocol_visit(key: str, arm: str) -> str:
    """The visit as the study grid and `$adherence` name it (injection-2 of arm 1: c1-d7); the
    mapping's key when the child's arm is not known (its row rejected)."""
    plans = protocol_spec().data["arms"]
    if arm not in plans:
        return key
    injected = [v.id for v in visit_plan(protocol_spec(), arm) if v.injection]
    return protocol_visit(key, injected) or key


def _visit_key(visit: str) -> tuple[int, Any]:
    """baseline, the injection visits (c1-d0, ... by course and day), the follow-ups by month,
    then any the protocol does not know.

    Examples:
        >>> sorted(["fu-m12", "c2-d28", "fu-m3", "c1-d7", "baseline", "injection-5"], key=_visit_key)
        ['baseline', 'c1-d7', 'c2-d28', 'fu-m3', 'fu-m12', 'injection-5']
    """
    course = re.fullmatch(r"c(\d+)-d(\d+)", visit)
    month = re.fullmatch(r"fu-m(\d+)", visit)
    if visit == "baseline":
        return (0, 0)
    if course:
        return (1, (int(course.group(1)), int(course.group(2))))
    if month:
        return (2, int(month.group(1)))
    head, _, number = visit.rpartition("-")  # a mapping's key: injection-N, month-N by N
    return (3, (head, int(number))) if number.isdigit() else (4, (visit, 0))
