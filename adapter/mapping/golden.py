"""Golden tests of a mapping: a small input, the FHIR it must give and the rows it must reject.

Runs with a fixed pseudonym key and a fixed Provenance.recorded, so the expected output is
exact; a difference is shown as a unified diff of pretty-printed resources. `update` rewrites
the expected files from the current output (review the diff before committing them).
"""
from __future__ import annotations

import csv
import difflib
import io
import json
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

from adapter.mapping.ingest import REJECTION_COLUMNS, translate
from adapter.mapping.spec import MappingSpec

__all__ = ["GOLDEN_KEY", "GOLDEN_RECORDED", "GoldenResult", "run_golden"]

GOLDEN_KEY = b"golden-test-key: not a secret"
GOLDEN_RECORDED = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class GoldenResult:
    input: str
    diff: str  # "" when the output is as expected

    @property
    def passed(self) -> bool:
        return not self.diff


def _pretty(ndjson: str) -> list[str]:
    lines: list[str] = []
    for line in ndjson.splitlines():
        if line.strip():
            lines += json.dumps(json.loads(line), indent=2, ensure_ascii=False).splitlines()
    return lines


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _rejections_csv(spec: MappingSpec, report_rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REJECTION_COLUMNS)
    writer.writerows(report_rows)
    return out.getvalue()


def run_golden(spec: MappingSpec, update: bool = False) -> list[GoldenResult]:
    results = []
    for case in spec.data.get("golden", []):
        source = spec.relative(case["input"])
        out = io.BytesIO()
        report = translate(spec, [source], out, GOLDEN_KEY, GOLDEN_RECORDED)
        got = out.getvalue().decode()
        rejected = _rejections_csv(spec, [[pathlib.Path(r.file).name, str(r.row), r.column, r.value, r.rule,
                                           r.reason, " ".join(r.not_made), r.cell] for r in report.rejections])
        files: list[tuple[pathlib.Path, str, Callable[[str], list[str]]]] = [
            (spec.relative(case["expected"]), got, _pretty)]
        if "rejections" in case:
            files.append((spec.relative(case["rejections"]), rejected, _lines))
        diff: list[str] = []
        for path, text, shape in files:
            if update:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                continue
            if not path.exists():  # not a diff against nothing: thousands of lines that say no more
                diff.append(f"no expected output ({path}): run with --update, review the files, commit them")
                continue
            expected = path.read_text(encoding="utf-8")
            diff += difflib.unified_diff(shape(expected), shape(text), f"expected {path}", "got", lineterm="")
        results.append(GoldenResult(case["input"], "\n".join(diff)))
    return results
