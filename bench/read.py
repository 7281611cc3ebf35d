"""Read-path benchmark: the gateway against bare Flask serving the same bytes, in one run.

Usage: python -m bench.read [--workers 1,2,4] [--server gunicorn,granian] [--auth] [--db URL ...]
       [--duration 12] [--rounds 3]

The gateway on each store (default: SQLite, and PostgreSQL when it answers) and a bare Flask app
returning the same bytes run under the same server and settings: gunicorn sync workers, or
granian's WSGI interface (a Rust HTTP server, keep-alive; `pip install granian`; a benchmark
choice only), no access log. With --auth the gateway runs with SMART authorisation on (the
audit off) and every request carries a token from its token endpoint; bare Flask checks nothing.
The load comes from wrk when it is installed (Debian package `wrk`), otherwise from a Python
generator with the same number of connections. Printed: req/s, p50 and p99 latency for
read-by-id and for a search, per server and worker count, each as a ratio of bare Flask.
Targets: read-by-id >= 1.0x bare Flask on SQLite, >= 0.8x on PostgreSQL; search >= 0.5x.

Example: python -m bench.read --server gunicorn,granian --auth --duration 24
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import requests

from bench.loadgen import Result, python_load
from bench.stores import temporary_stores

ROOT = pathlib.Path(__file__).resolve().parent.parent
READ_PATH = "/fhir/Observation/bench-0001"
SEARCH_PATH = "/fhir/Observation?subject=Patient/bench-p07&code=http://loinc.org|29463-7&_count=10"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare_store(db_url: str, observations: int) -> None:
    from adapter.loading import load_files
    from adapter.store import open_store
    store = open_store(db_url)
    load_files(store, [ROOT / "fixtures" / "demo"])
    store.load([{"resourceType": "Patient", "id": f"bench-p{i:02d}"} for i in range(50)])  # what they refer to
    store.load({
        "resourceType": "Observation", "id": f"bench-{i:04d}", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
        "subject": {"reference": f"Patient/bench-p{i % 50:02d}"},
        "effectiveDateTime": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}",
        "valueQuantity": {"value": 15 + (i % 100) / 10, "unit": "kg",
                          "system": "http://unitsofmeasure.org", "code": "kg"},
    } for i in range(observations))
    store.close()


def _command(server: str, app: str, port: int, workers: int) -> list[str]:
    program = shutil.which(server, path=os.path.dirname(sys.executable)) or server
    if server == "granian":
        factory = app.endswith("()")
        return [program, "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers), "--blocking-threads", "1", "--log-level", "warning",
                *(["--factory"] if factory else []), app.removesuffix("()")]
    return [program, "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--no-control-socket",
            "--log-level", "warning", app]


@contextlib.contextmanager
def _gunicorn(app: str, port: int, env: dict[str, str], workdir: pathlib.Path,
              workers: int = 2, server: str = "gunicorn") -> Iterator[str]:
    proc = subprocess.Popen(
        _command(server, app, port, workers),
        env={**os.environ, **env, "HOME": str(workdir)}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(base + READ_PATH, timeout=5)
                break
            except requests.RequestException:  # not listening yet, or still loading
                time.sleep(0.1)
        time.sleep(1.0)  # let every worker finish loading before the load starts
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_load(url: str, duration: float, connections: int, headers: dict[str, str] | None = None) -> Result:
    extra = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    out = subprocess.run(
        ["wrk", "--latency", "-t", "2", "-c", str(connections), "-d", f"{max(1, round(duration))}s", *extra, url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {m.group(1): float(m.group(2)) * _UNITS[m.group(3)] for m in _WRK_LATENCY.finditer(out)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(rps, lat["50"], lat["99"], int(errors.group(1)) if errors else 0)


def paired_load_arguments(doc: str | None) -> tuple[argparse.Namespace, Any]:
    """The options of a benchmark that loads two gateways side by side (bench.audit, bench.auth),
    and the load generator to use: wrk when installed, else the Python one."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=12.0, help="seconds of load per server")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is shown")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--observations", type=int, default=2000)
    parser.add_argument("--db", action="append", help="database URL (repeatable)")
    parser.add_argument("--python-load", action="store_true", help="use the Python generator even if wrk exists")
    args = parser.parse_args()
    return args, python_load if args.python_load or not shutil.which("wrk") else wrk_load


def _measure(servers: dict[str, str], args: argparse.Namespace, load: Any,
             headers: dict[str, dict[str, str]]) -> dict[tuple[str, str], Result]:
    """Interleaved rounds over every server, so that drift in the machine's speed hits all alike."""
    runs: dict[tuple[str, str], list[Result]] = {}
    for _ in range(args.rounds):
        for name, path in (("read-by-id", READ_PATH), ("search", SEARCH_PATH)):
            for server, base in servers.items():
                runs.setdefault((server, name), []).append(
                    load(base + path, args.duration / args.rounds, args.connections, headers.get(server)))
    return {key: sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for key, rs in runs.items()}


def _gateway_env(label: str, url: str, auth: bool, workdir: pathlib.Path) -> dict[str, str]:
    env = {"FHIR_ADAPTER_DB": url}
    if auth:
        env.update(FHIR_ADAPTER_AUTH="on", FHIR_ADAPTER_AUDIT="off",
                   FHIR_ADAPTER_AUTH_KEY=str(workdir / f"{label}-auth-key.json"))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=12.0,
                        help="seconds of load per request kind and server, split into rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is shown")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--observations", type=int, default=2000)
    parser.add_argument("--workers", default="2", help="worker process counts, e.g. 1,2,4")
    parser.add_argument("--server", default="gunicorn", help="HTTP servers to compare: gunicorn, granian")
    parser.add_argument("--auth", action="store_true", help="the gateway with authorisation on (audit off)")
    parser.add_argument("--db", action="append", help="database URL (repeatable); default: "
                        "a fresh SQLite file and PostgreSQL when it answers (bench/stores.py)")
    parser.add_argument("--python-load", action="store_true", help="use the Python generator even if wrk exists")
    args = parser.parse_args()
    load = python_load if args.python_load or not shutil.which("wrk") else wrk_load
    worker_counts = [int(w) for w in args.workers.split(",")]
    server_kinds = [kind.strip() for kind in args.server.split(",")]
    table: list[tuple[str, str, int, str, Result, float]] = []
    key = None
    if args.auth:
        from joserfc.jwk import RSAKey
        key = RSAKey.generate_key(2048, parameters={"kid": "bench"})
    with temporary_stores(args.db) as stores, tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        for _, url in stores:
            _prepare_store(url, args.observations)
            if key is not None:
                from bench.auth import _register
                _register(url, key)
        for kind in server_kinds:
            for workers in worker_counts:
                with contextlib.ExitStack() as stack:
                    servers = {label: stack.enter_context(_gunicorn(
                        "adapter.gateway.app:create_app()", _free_port(),
                        _gateway_env(label, url, args.auth, workdir), workdir, workers, kind))
                        for label, url in stores}
                    headers: dict[str, dict[str, str]] = {}
                    if key is not None:
                        from bench.auth import _token
                        headers = {label: {"Authorization": f"Bearer {_token(base, key)}"}
                                   for label, base in servers.items()}
                    first, label = next(iter(servers.values())), next(iter(servers))
                    for name, path in (("read.json", READ_PATH), ("search.json", SEARCH_PATH)):
                        answer = requests.get(first + path, headers=headers.get(label), timeout=5)
                        answer.raise_for_status()
                        (workdir / name).write_bytes(answer.content)
                    servers = {"bare Flask": stack.enter_context(_gunicorn(
                        "bench.bare_app:app", _free_port(), {"BENCH_BYTES_DIR": tmp}, workdir, workers, kind)),
                        **servers}
                    results = _measure(servers, args, load, headers)
                for name in ("read-by-id", "search"):
                    bare = results[("bare Flask", name)]
                    for server in servers:
                        r = results[(server, name)]
                        table.append((name, kind, workers, server, r, r.rps / bare.rps))
    print(f"load generator: {load.__name__.replace('_load', '')}, {args.connections} connections, "
          f"median of {args.rounds} interleaved rounds of {args.duration / args.rounds:.0f} s; "
          f"{os.cpu_count()} cores; {args.observations} observations; "
          f"authorisation {'on (audit off)' if args.auth else 'off'}")
    print(f"{'request':<12}{'http server':<13}{'workers':>8}  {'server':<12}{'req/s':>9}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'errors':>8}{'vs bare':>9}")
    for name, kind, workers, server, r, ratio in sorted(table, key=lambda row: (row[0], row[1], row[2])):
        print(f"{name:<12}{kind:<13}{workers:>8}  {server:<12}{r.rps:>9.0f}{r.p50:>9.2f}{r.p99:>9.2f}"
              f"{r.errors:>8}{ratio:>8.2f}x")
    targets = {"read-by-id": {"sqlite": 1.0, "postgresql": 0.8}, "search": {"sqlite": 0.5, "postgresql": 0.5}}
    for name, kind, workers, server, _, ratio in table:
        if server != "bare Flask":
            target = targets[name].get(server.split()[0].lower(), 1.0)
            print(f"{name}, {kind}, {workers} workers, {server}: {ratio:.2f}x bare Flask "
                  f"(target >= {target:.2f}x): {'met' if ratio >= target else 'NOT met'}")


if __name__ == "__main__":
    main()
