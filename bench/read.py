"""Read-path benchmark: the gateway against bare Flask serving the same bytes, in one run.

Usage: python -m bench.read [--duration 12] [--rounds 3] [--connections 8] [--observations 2000]

Both apps run under the same gunicorn settings (2 sync workers, no access log). The load comes
from wrk when it is installed (Debian package `wrk`), otherwise from a Python generator with
the same number of connections. Printed: req/s, p50 and p99 latency for read-by-id and for a
search, and each as a ratio of bare Flask. Target: read-by-id >= 0.9x bare Flask.
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

import requests

from bench.loadgen import Result, python_load

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


@contextlib.contextmanager
def _gunicorn(app: str, port: int, env: dict[str, str], workdir: pathlib.Path) -> Iterator[str]:
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
    proc = subprocess.Popen(
        [gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "2", "--no-control-socket",
         "--log-level", "warning", app],
        env={**os.environ, **env, "HOME": str(workdir)}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(base + READ_PATH, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_load(url: str, duration: float, connections: int) -> Result:
    out = subprocess.run(
        ["wrk", "--latency", "-t", "2", "-c", str(connections), "-d", f"{max(1, round(duration))}s", url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {m.group(1): float(m.group(2)) * _UNITS[m.group(3)] for m in _WRK_LATENCY.finditer(out)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(rps, lat["50"], lat["99"], int(errors.group(1)) if errors else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=12.0,
                        help="seconds of load per request kind and server, split into rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is shown")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--observations", type=int, default=2000)
    parser.add_argument("--python-load", action="store_true", help="use the Python generator even if wrk exists")
    args = parser.parse_args()
    load = python_load if args.python_load or not shutil.which("wrk") else wrk_load
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        db_url = f"sqlite:///{workdir / 'bench.db'}"
        _prepare_store(db_url, args.observations)
        runs: dict[tuple[str, str], list[Result]] = {}
        with _gunicorn("adapter.gateway.app:create_app()", _free_port(),
                       {"FHIR_ADAPTER_DB": db_url}, workdir) as gateway:
            (workdir / "read.json").write_bytes(requests.get(gateway + READ_PATH, timeout=5).content)
            (workdir / "search.json").write_bytes(requests.get(gateway + SEARCH_PATH, timeout=5).content)
            with _gunicorn("bench.bare_app:app", _free_port(), {"BENCH_BYTES_DIR": tmp}, workdir) as bare:
                # Interleaved rounds, so that drift in the machine's speed hits both alike.
                for _ in range(args.rounds):
                    for name, path in (("read-by-id", READ_PATH), ("search", SEARCH_PATH)):
                        for server, base in (("bare", bare), ("gateway", gateway)):
                            runs.setdefault((server, name), []).append(
                                load(base + path, args.duration / args.rounds, args.connections))
        results = {key: sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for key, rs in runs.items()}
    print(f"load generator: {load.__name__.replace('_load', '')}, {args.connections} connections, "
          f"median of {args.rounds} interleaved rounds of {args.duration / args.rounds:.0f} s; "
          f"gunicorn 2 sync workers each; {os.cpu_count()} cores; {args.observations} observations")
    print(f"{'request':<12}{'server':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'vs bare':>10}")
    for name in ("read-by-id", "search"):
        bare = results[("bare", name)]
        for server in ("bare", "gateway"):
            r = results[(server, name)]
            print(f"{name:<12}{server:<10}{r.rps:>10.0f}{r.p50:>10.2f}{r.p99:>10.2f}{r.errors:>8}"
                  f"{r.rps / bare.rps:>9.2f}x")
    ratio = results[("gateway", "read-by-id")].rps / results[("bare", "read-by-id")].rps
    print(f"read-by-id ratio {ratio:.2f}x bare Flask (target >= 0.90x): "
          f"{'met' if ratio >= 0.9 else 'NOT met'}")


if __name__ == "__main__":
    main()
