"""Soak: minutes of mixed load at 80% of the measured maximum, per minute, on each store.

Usage: python -m bench.soak [--minutes 10] [--connections 8] [--load 0.8] [--workers 2]
       [--server gunicorn|granian] [--db URL ...]

The gateway (`adapter.gateway.app:create_app()`, sync workers, as `fhir-adapter serve` runs it)
on each store (default: a fresh SQLite file, and PostgreSQL when it answers) with the demo and
2,000 Observations of 50 patients. The mix: 70% reads by id, 20% searches
(`Observation?subject=&code=`), 10% writes (half creates, half updates of an existing
Observation), every write on a random one of the 50 patients, so the store grows as a site's
does. First 20 s unpaced give the maximum; then the load is paced at `--load` of it (an open
loop: a slow answer does not slow the arrivals) for `--minutes`.

Printed per minute: req/s, p50, p99, errors, the store's size, the workers' summed RSS, and a
machine check (the time of a fixed piece of pure Python run by the load generator: when it
grows, the machine, not the server, slowed down). Targets: 0 errors, the last minute's p99
within 1.5x the first's, RSS flat.

Example: python -m bench.soak --minutes 10
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import pathlib
import random
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.read import _free_port, _gunicorn, _prepare_store
from bench.stores import temporary_stores

PATIENTS = 50
SEEDED = 2000  # Observations bench-0000 .. bench-1999 (bench/read.py)


@dataclass
class Minute:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)


def _observation(patient: int, value: float, rid: str | None = None) -> bytes:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
        "subject": {"reference": f"Patient/bench-p{patient:02d}"},
        "effectiveDateTime": "2026-11-30",
        "valueQuantity": {"value": value, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
    if rid:
        resource["id"] = rid
    return orjson.dumps(resource)


def _request(rng: random.Random) -> tuple[str, str, bytes | None]:
    draw = rng.random()
    patient = rng.randrange(PATIENTS)
    if draw < 0.70:
        return "GET", f"/fhir/Observation/bench-{rng.randrange(SEEDED):04d}", None
    if draw < 0.90:
        return "GET", (f"/fhir/Observation?subject=Patient/bench-p{patient:02d}"
                       "&code=http://loinc.org|29463-7&_count=10"), None
    if draw < 0.95:
        return "POST", "/fhir/Observation", _observation(patient, round(rng.uniform(10, 30), 1))
    rid = f"bench-{rng.randrange(SEEDED):04d}"
    # An update keeps the Observation's own patient (bench-NNNN is of patient NNNN % 50).
    return "PUT", f"/fhir/Observation/{rid}", _observation(int(rid[6:]) % PATIENTS, round(rng.uniform(10, 30), 1), rid)


def _run(port: int, seconds: float, connections: int, rate: float | None, minutes: list[Minute],
         started: float) -> None:
    """`connections` threads; each paced at rate/connections per second (None: back to back)."""
    deadline = started + seconds
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        interval = connections / rate if rate else 0.0
        due = started + rng.random() * interval
        while True:
            now = time.perf_counter()
            if rate:
                if due > now:
                    time.sleep(due - now)
                now, due = time.perf_counter(), due + interval
            if now >= deadline:
                break
            method, path, body = _request(rng)
            headers = {"Accept": "application/fhir+json"}
            if body is not None:
                headers["Content-Type"] = "application/fhir+json"
            problem = None
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                if response.status >= 400:
                    problem = f"{method} {path}: {response.status} {payload[:200]!r}"
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{method} {path}: {exc!r}"
                conn.close()
            ended = time.perf_counter()
            # Latency from when the request was due: an open loop counts the wait for the server.
            latency = (ended - (due - interval if rate else now)) * 1000
            slot = minutes[min(int((now - started) // 60), len(minutes) - 1)]
            with lock:
                slot.latencies.append(latency)
                if problem:
                    slot.errors += 1
                    if len(slot.error_examples) < 3:
                        slot.error_examples.append(problem)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _worker_rss_mb(master: int) -> float:
    """The summed RSS of the server's worker processes (the master's children), from /proc."""
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in children:
        with contextlib.suppress(OSError):
            for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _machine_check_ms() -> float:
    """A fixed piece of pure Python: its time tracks the machine's speed, not the server's."""
    started = time.perf_counter()
    total = 0
    for i in range(300_000):
        total += i * i % 7
    return (time.perf_counter() - started) * 1000


def _count(db_url: str) -> int:
    from adapter.fhir.search import parse_search
    from adapter.store import open_store
    store = open_store(db_url)
    try:
        page = store.search(parse_search("Observation", [("_summary", "count"), ("_total", "accurate")]))
        return int(page.total or 0)
    finally:
        store.close()


def soak(label: str, url: str, args: argparse.Namespace, workdir: pathlib.Path) -> None:
    _prepare_store(url, SEEDED)
    port = _free_port()
    with _gunicorn("adapter.gateway.app:create_app()", port, {"FHIR_ADAPTER_DB": url}, workdir,
                   args.workers, args.server) as _:
        master = int(subprocess.run(["pgrep", "-o", "-f", f"127.0.0.1:{port}"], capture_output=True,
                                    text=True).stdout.split()[0])
        probe = [Minute()]
        started = time.perf_counter()
        _run(port, 20, args.connections, None, probe, started)
        maximum = len(probe[0].latencies) / (time.perf_counter() - started)
        rate = maximum * args.load
        print(f"{label}: maximum {maximum:,.0f} req/s unpaced ({probe[0].errors} errors); "
              f"soaking at {rate:,.0f} req/s for {args.minutes} min", flush=True)
        minutes = [Minute() for _ in range(args.minutes)]
        checks: list[tuple[float, float, int]] = []
        stop = threading.Event()

        def sample() -> None:  # at each minute's middle: RSS, the machine check, the store's size
            for m in range(args.minutes):
                if stop.wait(max(0.0, started2 + m * 60 + 30 - time.perf_counter())):
                    return
                checks.append((_worker_rss_mb(master), _machine_check_ms(), _count(url)))

        started2 = time.perf_counter()
        sampler = threading.Thread(target=sample)
        sampler.start()
        _run(port, args.minutes * 60, args.connections, rate, minutes, started2)
        stop.set()
        sampler.join()
    print(f"{'minute':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'Observations':>14}"
          f"{'worker RSS MB':>15}{'machine check ms':>18}")
    for m, minute in enumerate(minutes):
        q = statistics.quantiles(minute.latencies, n=100) if len(minute.latencies) > 1 else [0.0] * 99
        rss, check, size = checks[m] if m < len(checks) else (0.0, 0.0, 0)
        print(f"{m + 1:>6}{len(minute.latencies) / 60:>9.0f}{q[49]:>9.2f}{q[98]:>9.2f}{minute.errors:>8}"
              f"{size:>14,}{rss:>15.0f}{check:>18.1f}")
        for example in minute.error_examples:
            print(f"        e.g. {example}")
    first, last = (statistics.quantiles(minutes[i].latencies, n=100)[98] for i in (0, -1))
    errors = sum(m.errors for m in minutes)
    rss_first, rss_last = checks[0][0], checks[-1][0]
    print(f"{label}: {errors} errors (target 0); last minute's p99 / first's = {last / first:.2f}x "
          f"(target <= 1.5x); worker RSS {rss_first:.0f} -> {rss_last:.0f} MB "
          f"({rss_last / rss_first:.2f}x); machine check {checks[0][1]:.1f} -> {checks[-1][1]:.1f} ms\n",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Example: python -m bench.soak --minutes 10")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--load", type=float, default=0.8, help="share of the measured maximum")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", default="gunicorn", choices=["gunicorn", "granian"])
    parser.add_argument("--db", action="append", help="database URL (repeatable); default: "
                        "a fresh SQLite file and PostgreSQL when it answers (bench/stores.py)")
    args = parser.parse_args()
    with temporary_stores(args.db) as stores, tempfile.TemporaryDirectory() as tmp:
        for label, url in stores:
            soak(label, url, args, pathlib.Path(tmp))


if __name__ == "__main__":
    main()
