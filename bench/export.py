"""Bulk export benchmark: a full system-level $export of a generated store, with memory sampled.

Usage: python -m bench.export [--sizes 100000,1000000] [--db URL]

The store (default: a fresh SQLite file) is filled with generated children (bench/ingest.py)
up to each size; at each size a `$export` is kicked off through the gateway (Flask test client)
and polled until its manifest is ready. Baseline, in the same run: the same rows copied from
the database to a file with one plain SELECT (no FHIR, no paging). Printed: resources/s of
both, their ratio, and this process's resident memory before and at its peak during the export.
Targets: >= 20,000 resources/s; memory flat whatever the size.
"""
from __future__ import annotations

import argparse
import pathlib
import tempfile
import threading
import time

from sqlalchemy import select

from bench.ingest import generate


def _rss_mb() -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _baseline(store, out: pathlib.Path) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    from adapter.store.schema import resources
    started, n = time.perf_counter(), 0
    with store.engine.connect() as conn, out.open("wb") as handle:
        result = conn.execution_options(stream_results=True, yield_per=1000).execute(
            select(resources.c.data).where(~resources.c.deleted).order_by(resources.c.res_type, resources.c.res_id))
        for (data,) in result:
            handle.write(data)
            handle.write(b"\n")
            n += 1
    return n, time.perf_counter() - started


def _export(client) -> tuple[int, float, float]:  # type: ignore[no-untyped-def]
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    kick = client.get("/fhir/$export", headers={"Prefer": "respond-async"})
    status_url = kick.headers["Content-Location"].replace("http://localhost", "")
    while True:
        status = client.get(status_url)
        if status.status_code == 200:
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return sum(o["count"] for o in status.get_json()["output"]), seconds, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--db", help="an empty database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    from adapter.gateway.app import create_app
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{tmp}/export.db"
        app = create_app({"DATABASE_URL": url, "EXPORT_DIR": f"{tmp}/exports"})
        client, store = app.test_client(), app.extensions["fhir_store"]
        source, loaded = generate(sizes[-1]), 0
        rows = []
        for size in sizes:
            batch = [next(source) for _ in range(size - loaded)]
            store.load(batch)
            del batch
            loaded = size
            before = _rss_mb()
            count, seconds, peak = _export(client)
            base_n, base_s = _baseline(store, pathlib.Path(tmp) / "baseline.ndjson")
            rows.append((size, count, count / seconds, base_n / base_s, before, peak))
        print("| resources | exported | $export resources/s (target >= 20,000) | plain SELECT to file /s "
              "| ratio | RSS before / peak during (MB) |")
        print("|---|---|---|---|---|---|")
        for size, count, rate, base, before, peak in rows:
            print(f"| {size:,} | {count:,} | {rate:,.0f} | {base:,.0f} | {rate / base:.2f}x | "
                  f"{before:,.0f} / {peak:,.0f} |")
        store.close()


if __name__ == "__main__":
    main()
