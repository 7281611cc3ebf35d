"""What a mapping reads of some export files: source columns read, left unused on purpose and
not mapped, and rules that never fired. Shared by `fhir-adapter mapping coverage` and the
mapping workbench page, so that both say the same about the same files."""
from __future__ import annotations

import io
import pathlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from adapter.mapping.scopes import read_source
from adapter.mapping.ingest import translate
from adapter.mapping.run import MappingReport
from adapter.mapping.sources import SourceRow
from adapter.mapping.rules import referenced_fields
from adapter.mapping.spec import MappingSpec, Rule
from adapter.mapping.tables import WIDE_VISIT

__all__ = ["Coverage", "coverage", "DRY_RUN_KEY"]

# A dry run stores nothing, so the pseudonyms it makes need not be the site's: a fixed key keeps
# the site's real key out of a process that only looks at a file.
DRY_RUN_KEY = b"coverage-only-key-not-stored"


@dataclass
class Coverage:
    read: list[str]  # columns (or JSON paths) present in the files and read by a rule
    unused_on_purpose: list[str]  # the mapping's `source.unused`
    not_mapped: list[str]  # present, read by no rule, not declared unused
    never_fired: list[Rule]
    rules: int
    report: MappingReport  # the dry run's rows accepted, partly accepted, rejected


def _leaves(node: Any, path: str, out: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _leaves(value, f"{path}.{key}", out)
    elif isinstance(node, list):
        for item in node:
            _leaves(item, f"{path}[*]", out)
    else:
        out.add(path)


def coverage(spec: MappingSpec, files: Iterable[str | pathlib.Path], out: BinaryIO | io.BytesIO | None = None) -> Coverage:
    """Read the files once for their columns, then translate them (a dry run; the FHIR as NDJSON
    to `out` when given)."""
    files = list(files)
    present: set[str] = set()
    for path in files:
        for row in read_source(spec, path):
            if isinstance(row, SourceRow):
                if spec.tabular:  # a wide record's fields by their names (ADL), and no visit label
                    present |= set(row.values) - {WIDE_VISIT}
                else:
                    _leaves(row.values, "$", present)
    report = translate(spec, files, out if out is not None else io.BytesIO(), DRY_RUN_KEY, "2000-01-01T00:00:00Z")
    if spec.tabular:  # a column a rule names is mapped, even if no row of these files fired it
        report.seen |= {name for _, name in referenced_fields(spec.data, spec.catalogue)}
    items = spec.source.get("items")
    on_purpose = {u if spec.tabular or u.startswith("$.") else f"$.{items}[*].{u}"
                  for u in spec.source.get("unused", [])}

    def covered(column: str) -> bool:
        return column in report.seen or re.sub(r"___\w+$", "", column) in report.seen or any(
            column == u or column.startswith(u + ".") or column.startswith(u + "[") for u in on_purpose)

    return Coverage(sorted(report.seen & present), sorted(on_purpose), sorted(c for c in present if not covered(c)),
                    [r for r in spec.rules if not report.fired[r.index]], len(spec.rules), report)
