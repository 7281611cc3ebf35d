"""Peers benchmark: mapping lab rows to FHIR, this adapter beside FUME's engine fumifier.

Usage: python -m bench.peers [--rows 20000] [--workers 1]

The same generated lab export (one row per child and visit, the immune panel in eight columns)
is mapped by `translate` with bench/peers/labs.yaml (read, map, validate every resource, write
NDJSON) and, in the same run, by fumifier (npm, a benchmark dependency only: installed into
bench/peers/node_modules with `npm ci` when missing) evaluating bench/peers/labs.jsonata, the
same lab-row -> Observation mapping in plain JSONata mode (no FHIR navigator: nothing is
validated). Both are timed from reading the file to the last line written, start-up and
compilation aside (printed apart for the adapter). Printed: rows/s and resources/s of both,
and the ratio. Target: the adapter >= 1.0x fumifier's rows/s.
"""
from __future__ import annotations

import io
import json
import pathlib
import random
import shutil
import subprocess
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
SPEC = HERE / "labs.yaml"
JSONATA = HERE / "labs.jsonata"
KEY = b"bench-pseudonym-key-not-a-secret"
RECORDED = "2026-01-01T00:00:00Z"
COLUMNS = {  # column: (low, high, decimal places) of the generated values, inside the catalogue's checks
    "cd3_pct": (55, 80, 1), "cd4_pct": (25, 50, 1), "cd8_pct": (15, 35, 1), "cd19_pct": (10, 30, 1),
    "nk_pct": (5, 20, 1), "igg_gl": (5, 16, 2), "iga_gl": (0.4, 2.5, 2), "igm_gl": (0.4, 2.0, 2)}
HEADER = ["record_id", "visit", "visit_date", *COLUMNS]
VISITS = [("baseline", 0), ("month-3", 91), ("month-6", 182), ("month-12", 365)]


def write_rows(rows: int, path: pathlib.Path, seed: int = 2025) -> int:
    """A lab export of `rows` rows (children of four visits each); rows written."""
    import datetime
    rng = random.Random(seed)
    start = datetime.date(2025, 1, 6)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(HEADER) + "\n")
        for n in range(rows):
            child, (visit, day) = divmod(n, len(VISITS))[0], VISITS[n % len(VISITS)]
            date = start + datetime.timedelta(days=child % 300 + day)
            values = [f"{rng.uniform(low, high):.{places}f}" for low, high, places in COLUMNS.values()]
            handle.write(",".join([f"L{child + 1:06d}", visit, date.isoformat(), *values]) + "\n")
    return rows


def adapter_translate(path: pathlib.Path, workers: int = 1) -> tuple[dict[str, Any], list[bytes]]:
    """Timings and counts of `translate` over the file, and its NDJSON lines."""
    started = time.perf_counter()
    from adapter.mapping.ingest import translate
    from adapter.mapping.spec import load_mapping
    spec = load_mapping(SPEC)
    loaded = time.perf_counter()
    out = io.BytesIO()
    cpu = time.process_time()
    report = translate(spec, [path], out, KEY, RECORDED, workers=workers)
    seconds = time.perf_counter() - loaded
    return ({"rows": report.rows_read, "resources": report.writes, "seconds": seconds,
             "cpu": time.process_time() - cpu, "start-up": loaded - started,
             "rejected": report.rows_rejected + report.rows_partly}, out.getvalue().splitlines())


def node_ready() -> bool:
    """fumifier installed under bench/peers (npm ci when missing); False without node and npm."""
    if shutil.which("node") is None:
        return False
    if not (HERE / "node_modules" / "fumifier").is_dir():
        if shutil.which("npm") is None:
            return False
        subprocess.run(["npm", "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--silent"], check=True)
    return True


def fumifier_map(path: pathlib.Path, out: pathlib.Path) -> dict[str, Any]:
    """Timings and counts of fumifier over the file (bench/peers/run.mjs); NDJSON written to `out`."""
    done = subprocess.run(["node", str(HERE / "run.mjs"), str(JSONATA), str(path), str(out)],
                          check=True, capture_output=True, text=True, cwd=HERE)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
