"""Workbook benchmark: the fifth site (an Excel workbook) beside a CSV site, on this machine.

Usage: python -m bench.workbooks [--children 500] [--repeat 3]

1. The fixture's own figures: site E's workbook through its mapping (rows, records, values
   written as resources, rejections), as `fhir-adapter ingest` counts them.
2. The reader: python-calamine (what the adapter reads workbooks with) beside openpyxl (read-only
   mode, the other maintained reader), each reading every sheet of site E's layout scaled to
   `--children` children into Python values; best of `--repeat`.
3. The ingest rate, end to end in one process into a fresh SQLite store: site E's layout scaled
   to `--children` children beside site C's (a CSV of the same cohort model) of as many.
Printed with the date and the load average: the machine is shared, a busy one is slower.
"""
from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import sys
import tempfile
import time

from adapter.mapping.ingest import ingest
from adapter.mapping.spec import load_mapping
from adapter.store import open_store
from adapter.study.build import build_resources
from adapter.protocol.spec import SPECS, load_spec

ROOT = pathlib.Path(__file__).resolve().parent.parent
SITES = ROOT / "fixtures" / "sites"
MAPPINGS = ROOT / "mappings" / "sites"
KEY = b"bench-pseudonym-key-not-a-secret"


def _generate(children: int, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Site E's workbook and site C's CSV of `children` children each (the fixtures' generators)."""
    sys.path.insert(0, str(SITES))
    from generate import cohort
    from site_c import write_site_c
    from site_e import write_site_e
    write_site_e(cohort("E", children, 2025_05), folder / "site-e")
    write_site_c(cohort("C", children, 2025_03), folder / "site-c")
    return folder / "site-e" / "export.xlsx", folder / "site-c" / "export.csv"


def _best(repeat: int, work) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def read_calamine(path: pathlib.Path) -> int:
    from python_calamine import CalamineWorkbook
    book = CalamineWorkbook.from_path(str(path))
    return sum(len(book.get_sheet_by_name(name).to_python()) for name in book.sheet_names)


def read_openpyxl(path: pathlib.Path) -> int:
    import openpyxl
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    rows = sum(len(list(sheet.iter_rows(values_only=True))) for sheet in book.worksheets)
    book.close()
    return rows


def ingest_rate(spec: pathlib.Path, export: pathlib.Path, folder: pathlib.Path) -> tuple[str, float, int]:
    store = open_store(f"sqlite:///{folder / (spec.stem + '.db')}")
    try:
        store.load(build_resources(load_spec(SPECS / "ucmsc-cp-v1.yaml")))
        started = time.perf_counter()
        report = ingest(load_mapping(spec), [export], store, KEY, workers=1)
        return report.summary(), time.perf_counter() - started, report.resources
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        summary, seconds, _ = ingest_rate(MAPPINGS / "site-e.yaml", SITES / "site-e" / "export.xlsx", folder)
        print(f"site E fixture (export.xlsx, 10 children): {summary}")
        workbook, csv_file = _generate(args.children, folder)
        rows = read_calamine(workbook)
        calamine = _best(args.repeat, lambda: read_calamine(workbook))
        openpyxl = _best(args.repeat, lambda: read_openpyxl(workbook))
        print(f"reading site E's layout, {args.children} children ({rows:,} sheet rows, "
              f"{workbook.stat().st_size / 1e6:.1f} MB): python-calamine {calamine * 1000:,.0f} ms, "
              f"openpyxl (read-only) {openpyxl * 1000:,.0f} ms: {openpyxl / calamine:.1f}x")
        print("| site, children | rows read: outcome | resources | seconds | resources/s |\n|---|---|---|---|---|")
        for name, spec, export in (("E (xlsx)", "site-e", workbook), ("C (CSV)", "site-c", csv_file)):
            summary, seconds, resources = ingest_rate(MAPPINGS / f"{spec}.yaml", export, folder)
            print(f"| {name}, {args.children} | {summary.split(';')[0]} | {resources:,} | {seconds:.1f} | "
                  f"{resources / seconds:,.0f} |")


if __name__ == "__main__":
    main()
