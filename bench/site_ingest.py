"""Site ingest benchmark: a site's export scaled to N children, end to end into SQLite.

Usage: python -m bench.site_ingest [--children 10000] [--workers 2] [--db URL] [--site a|d]

Site A: REDCap flat export, one value per cell. Site D: REDCap longitudinal with item-level
GMFM-88 (88 item columns, dimensions and total derived), cells given derived from a per-kg dose
and a weight looked up on an earlier row (a first pass over the file), an arm read per child.

The site generator (fixtures/sites/generate.py) writes an export of N children (about 9 rows
and 160 resources each); `fhir-adapter ingest` then reads, maps, validates and stores it in a
child process whose peak memory (RSS, summed over it and its worker processes) is sampled.
In the same run, the baseline: validating the same resources alone, in one process.
Printed: rows/s and resources/s end to end, the ratio to validation alone, peak RSS.
Targets: >= 10,000 resources/s on 2 cores; RSS < 300 MB whatever the file size.

A lever, before and after: `--versus REV` (a git revision) ingests the same export with that
revision's code too, into a fresh store each time, in turns with this tree's over `--rounds`
rounds; a row per code (its median round) and the ratio of the two are printed.
"""
from __future__ import annotations

import argparse
import io
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import threading
import time

from adapter.protocol.spec import SPECS
from adapter.study.load import load_protocol
from adapter.fhir.validation import validate
from adapter.mapping.ingest import translate
from adapter.mapping.spec import load_mapping
from bench.revisions import revision_tree, turns

ROOT = pathlib.Path(__file__).resolve().parent.parent
SITES = ROOT / "fixtures" / "sites"
SPECS_OF = {"a": ROOT / "mappings" / "sites" / "site-a.yaml", "d": ROOT / "mappings" / "sites" / "site-d.yaml"}
SPEC = SPECS_OF["a"]
KEY = "bench-pseudonym-key-not-a-secret"


def write_export(children: int, path: pathlib.Path, site: str = "a") -> int:
    """A site's export of `children` synthetic children, written child by child; rows written."""
    sys.path.insert(0, str(SITES))
    from generate import _csv_text, make_child  # the fixtures' own cohort model
    import random
    import site_a
    import site_d
    HEADER = site_a.HEADER if site == "a" else site_d.HEADER  # noqa: N806
    rng = random.Random(2025_01)
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(_csv_text(HEADER, []))
        for n in range(1, children + 1):
            child = make_child(rng, site.upper(), n)
            child_rows = site_a.rows_of(child) if site == "a" else site_d.rows_of(n, child)
            handle.write(_csv_text(HEADER, child_rows).split("\n", 1)[1])
            rows += len(child_rows)
    return rows


def _family(pid: int) -> list[int]:
    """A process and all its descendants (the ingest and its worker processes)."""
    parents = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                grew = True
    return sorted(family)


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process: PSS shares the pages workers inherit from their parent."""
    try:
        fields = dict(line.split(":", 1) for line in (pathlib.Path(f"/proc/{pid}/smaps_rollup")).read_text()
                      .splitlines()[1:] if ":" in line)
    except OSError:
        return 0, 0
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


def end_to_end(export: pathlib.Path, db: str, workers: int, site: str = "a",
               code: pathlib.Path = ROOT) -> tuple[float, dict[str, int], str, float]:
    """Seconds, peak memory (kB: the largest process's RSS, the family's summed RSS and PSS),
    the ingest's summary line, and the CPU seconds of the ingest and its workers (user + system:
    what a busy machine does not inflate, unlike the seconds)."""
    command = [sys.executable, "-m", "adapter.cli", "ingest", "--site", f"site-{site}", "--mapping",
               str(SPECS_OF[site]), "--db", db, "--workers", str(workers), str(export)]
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(command, env={**os.environ, f"UCMSC_SITE_{site.upper()}_KEY": KEY,
                                             "PYTHONPATH": str(code)}, cwd=code, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"largest RSS": 0, "summed RSS": 0, "summed PSS": 0}

    def sample() -> None:
        while process.poll() is None:
            sizes = [_memory_kb(pid) for pid in _family(process.pid)]
            for name, value in (("largest RSS", max((r for r, _ in sizes), default=0)),
                                ("summed RSS", sum(r for r, _ in sizes)), ("summed PSS", sum(p for _, p in sizes))):
                peak[name] = max(peak[name], value)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    summary = next((line for line in (out + err).splitlines() if "rows read" in line), err.strip()[-300:])
    used = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers are waited for by the ingest
    return seconds, peak, summary, used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime


def validation_alone(export: pathlib.Path, rows: int, site: str = "a") -> float:
    """Resources/s of validate() alone over the resources of the export's first `rows` rows."""
    sample = pathlib.Path(tempfile.mkdtemp()) / "sample.csv"
    with export.open(encoding="utf-8") as src, sample.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i > rows:
                break
            dst.write(line)
    out = io.BytesIO()
    translate(load_mapping(SPECS_OF[site]), [sample], out, KEY.encode(), "2026-01-01T00:00:00Z")
    from adapter.fhir import jsonio
    resources = [jsonio.parse(line) for line in out.getvalue().splitlines()]
    validate(resources[0])  # warm the model and schema caches
    started = time.perf_counter()
    for made in resources:
        validate(made)
    return len(resources) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--db", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--site", choices=sorted(SPECS_OF), default="a", help="whose export layout (default: a)")
    parser.add_argument("--versus", metavar="REV", help="also ingest with this git revision's code, in turns")
    parser.add_argument("--rounds", type=int, default=1, help="ingests per code (the median is shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = pathlib.Path(tmp) / "export.csv"
        started = time.perf_counter()
        rows = write_export(args.children, export, args.site)
        print(f"export: {args.children:,} children, {rows:,} rows, {export.stat().st_size / 1e6:.1f} MB "
              f"(generated in {time.perf_counter() - started:.0f} s)")
        baseline = validation_alone(export, 2000, args.site)
        codes = {"this tree": ROOT}
        if args.versus:
            codes = {args.versus: revision_tree(args.versus), **codes}
        runs: dict[str, list[tuple[float, dict[str, int], str, float]]] = {label: [] for label in codes}
        for turn, label in turns(list(codes), args.rounds):
            db = args.db or f"sqlite:///{tmp}/bench-{turn}-{len(runs[label])}-{label.replace('/', '_')}.db"
            if args.db and db.startswith("sqlite:///"):
                pathlib.Path(db.removeprefix("sqlite:///")).unlink(missing_ok=True)
            load_protocol(db, SPECS / "ucmsc-cp-v1.yaml")  # what the rows refer to (references are checked)
            runs[label].append(end_to_end(export, db, args.workers, args.site, codes[label]))
            print(f"{label}, round {turn + 1}: {runs[label][-1][2]} ({runs[label][-1][0]:.1f} s)", flush=True)
        rates = {}
        for label, found in runs.items():
            seconds, memory, summary, cpu = sorted(found)[len(found) // 2]
            resources = int(summary.split(";")[1].split()[0]) if "resources" in summary else 0
            rates[label] = (resources / seconds, resources / cpu)
            print(f"\n{label}: ingest --workers {args.workers}: {summary}")
            print("| measure | value |\n|---|---|")
            print(f"| rows/s end to end (the command, start to exit) | {rows / seconds:,.0f} |")
            print(f"| resources/s end to end (target >= 10,000) | {resources / seconds:,.0f} |")
            print(f"| resources per CPU second, ingest + workers ({cpu:,.0f} CPU s) | {resources / cpu:,.0f} |")
            print(f"| resources/s validation alone, 1 process (baseline) | {baseline:,.0f} |")
            print(f"| end to end / validation alone | {resources / seconds / baseline:.2f}x |")
            for name, kb in memory.items():
                print(f"| peak {name}, ingest + {args.workers} workers (target < 300 MB) | {kb / 1024:,.0f} MB |")
        if args.versus:
            (before, before_cpu), (after, after_cpu) = rates.values()
            print(f"\nthis tree / {args.versus}: resources/s {after / before:.2f}x, "
                  f"resources per CPU s {after_cpu / before_cpu:.2f}x")
        load = pathlib.Path("/proc/loadavg").read_text().split()[:3]
        print(f"load average at the end (2 cores, shared): {' '.join(load)}")


if __name__ == "__main__":
    main()
