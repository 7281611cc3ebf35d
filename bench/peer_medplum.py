"""A peer on the read path: Medplum's FHIR router (`@medplum/fhir-router`, Node) over its
in-memory repository, beside this gateway on the same resources, in one run.

Usage: python -m bench.peer_medplum [--duration 12] [--rounds 3] [--workers 2] [--observations 2000]

The same resources (the demo and 2,000 Observations of 50 patients, bench/read.py) are stored in
a fresh SQLite file for the gateway and written as NDJSON for Medplum, whose repository keeps
them in the Node process's memory: no database, one process (Node runs JavaScript on one
thread), no validation beyond its own. Each server is loaded with wrk (else the Python
generator), read-by-id and a search, in interleaved rounds; the CPU seconds its processes used
are read from /proc, so that one Node process and several Python workers compare per CPU
second. The Node packages are installed into bench/medplum/node_modules on first use
(`npm ci`; a benchmark dependency only, never a runtime one).

Example: python -m bench.peer_medplum --server granian
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator

import requests

from bench.loadgen import Result, python_load
from bench.read import READ_PATH, SEARCH_PATH, _free_port, _gunicorn, _prepare_store, wrk_load

NODE_DIR = pathlib.Path(__file__).resolve().parent / "medplum"


def _install() -> None:
    if not (NODE_DIR / "node_modules" / "@medplum" / "fhir-router").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True)


def _ndjson(sqlite_file: pathlib.Path, out: pathlib.Path) -> int:
    with contextlib.closing(sqlite3.connect(sqlite_file)) as conn, out.open("wb") as f:
        rows = conn.execute("SELECT data FROM resources WHERE NOT deleted AND res_type != 'AuditEvent'").fetchall()
        for (data,) in rows:
            f.write(bytes(data) + b"\n")
    return len(rows)


@contextlib.contextmanager
def _medplum(ndjson: pathlib.Path, port: int) -> Iterator[str]:
    proc = subprocess.Popen(["node", "server.mjs", str(ndjson), str(port)], cwd=NODE_DIR,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + READ_PATH, timeout=5).status_code == 200:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"Medplum's server stopped: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _cpu_seconds(port: int) -> float:
    """utime + stime of every process listening for this port's server and its children."""
    pids = subprocess.run(["pgrep", "-f", f"(127.0.0.1:|--port ){port}|server.mjs .* {port}"],
                          capture_output=True, text=True).stdout.split()
    children = [c for pid in pids for c in subprocess.run(["pgrep", "-P", pid], capture_output=True,
                                                           text=True).stdout.split()]
    ticks = 0
    for pid in set(pids + children):
        with contextlib.suppress(OSError):
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per request kind and server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="the gateway's worker processes")
    parser.add_argument("--server", default="gunicorn", choices=["gunicorn", "granian"])
    parser.add_argument("--observations", type=int, default=2000)
    args = parser.parse_args()
    if not shutil.which("node") or not shutil.which("npm"):
        raise SystemExit("node and npm are needed for Medplum's router (Debian: apt-get install nodejs npm)")
    _install()
    load = wrk_load if shutil.which("wrk") else python_load
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        db = workdir / "bench.db"
        _prepare_store(f"sqlite:///{db}", args.observations)
        count = _ndjson(db, workdir / "resources.ndjson")
        ports = {"this gateway (SQLite)": _free_port(), "Medplum (memory)": _free_port()}
        runs: dict[tuple[str, str], list[tuple[Result, float]]] = {}
        with contextlib.ExitStack() as stack:
            servers = {
                "this gateway (SQLite)": stack.enter_context(_gunicorn(
                    "adapter.gateway.app:create_app()", ports["this gateway (SQLite)"],
                    {"FHIR_ADAPTER_DB": f"sqlite:///{db}"}, workdir, args.workers, args.server)),
                "Medplum (memory)": stack.enter_context(_medplum(workdir / "resources.ndjson",
                                                                 ports["Medplum (memory)"]))}
            for _ in range(args.rounds):
                for name, path in (("read-by-id", READ_PATH), ("search", SEARCH_PATH)):
                    for server, base in servers.items():
                        cpu = _cpu_seconds(ports[server])
                        result = load(base + path, args.duration / args.rounds, args.connections)
                        cpu = _cpu_seconds(ports[server]) - cpu
                        runs.setdefault((server, name), []).append((result, cpu))
    print(f"{count:,} resources; load: {load.__name__.replace('_load', '')}, {args.connections} connections, "
          f"median of {args.rounds} interleaved rounds of {args.duration / args.rounds:.0f} s; "
          f"gateway: {args.server}, {args.workers} workers; Medplum: one Node process; {os.cpu_count()} cores")
    print(f"{'request':<12}{'server':<24}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'req per CPU s':>15}")
    per_cpu: dict[tuple[str, str], float] = {}
    for (server, name), rs in sorted(runs.items(), key=lambda kv: kv[0][1]):
        result, cpu = sorted(rs, key=lambda rc: rc[0].rps)[len(rs) // 2]
        per_cpu[(server, name)] = result.rps * (args.duration / args.rounds) / cpu if cpu else 0.0
        print(f"{name:<12}{server:<24}{result.rps:>9.0f}{result.p50:>9.2f}{result.p99:>9.2f}"
              f"{result.errors:>8}{per_cpu[(server, name)]:>15.0f}")
    for name in ("read-by-id", "search"):
        ours, theirs = per_cpu[("this gateway (SQLite)", name)], per_cpu[("Medplum (memory)", name)]
        if ours and theirs:
            print(f"{name}: this gateway / Medplum per CPU second = {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
