"""Exchange benchmark: the centre pulls a generated site, beside a plain $export of that site.

Usage: python -m bench.exchange [--children 10000] [--db sqlite|postgresql|URL] [--sizes N,N/4]

The site: site A's REDCap export scaled to N children by the fixtures' own generator
(bench/site_ingest.py `write_export`), ingested once, with the protocol and the cohorts, into
an SQLite site store kept in var/bench/exchange-site-<N>/ (with the clients' keys and the
site's exchange key) so that runs after the first start at once. The site is served by
`fhir-adapter serve --auth` (gunicorn, 2 workers, audit on as with any --auth) on a loopback
port; two clients are registered: `centre` under the exchange policy centre-v1 and `plain`
with the same scope and no policy.

Measured, in the same run, for each size (N, then N/4 unless --sizes says otherwise):
- baseline: a system-level `$export` by `plain` (token, kick-off, polling, every file
  streamed to disk) in this process: resources/s;
- the pull: `fhir-adapter exchange pull --since all` as a child process into an empty centre
  store (the protocol's definitions only; SQLite in a temporary folder, or a schema of its own
  on PostgreSQL, dropped at the end), end to end (process start to exit, so the site's export
  under the policy, the downloads, verification and loading are all in it): resources/s, its
  CPU seconds with its verifying worker processes (resources per CPU second moves less than
  resources/s when others share the cores), the puller's peak RSS (VmHWM sampled from /proc,
  and the kernel's ru_maxrss at exit) and the peak PSS summed over it and its workers.
Targets: the pull >= 20,000 resources/s; its RSS < 200 MB whatever the size.

A lever, before and after: `--versus REV` (a git revision, e.g. `--versus HEAD~1`) runs the
pull of that revision's code too (its tree exported to var/bench/rev-<sha>/), against the same
site server, alternating with this tree's pull over `--rounds` rounds; the table then has a
row per code and size (the median round) and the ratio of the two.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

from bench.revisions import revision_tree, turns
from bench.site_ingest import _family, _memory_kb

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "bench"
SPEC = ROOT / "mappings" / "sites" / "site-a.yaml"
PG_DEFAULT = os.environ.get("FHIR_ADAPTER_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")
KEY = b"bench-pseudonym-key-not-a-secret"
SCOPE = "system/*.rs"


def _site(children: int) -> pathlib.Path:
    """The cached site folder for `children`: site.db, the two clients' keys, exchange-key."""
    folder = CACHE / f"exchange-site-{children}"
    if (folder / "ready").exists():
        return folder
    from adapter.exchange.cohorts import build_cohorts
    from adapter.demo_data import PROTOCOL_SPEC
    from adapter.exchange.demo import centre_keys
    from adapter.protocol.spec import load_spec
    from adapter.study.load import store_definitions
    from adapter.mapping.ingest import ingest
    from adapter.mapping.spec import load_mapping
    from adapter.store import open_store
    from adapter.store.clients import ClientRecord, ClientRegistry
    from bench.site_ingest import write_export
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    export = folder / "export.csv"
    rows = write_export(children, export)
    spec = load_mapping(SPEC)
    store = open_store(f"sqlite:///{folder / 'site.db'}")
    try:
        store_definitions(store, load_spec(PROTOCOL_SPEC))
        report = ingest(spec, [export], store, KEY, workers=os.cpu_count() or 1)
        build_cohorts(store, spec.catalogue.base, [("site-a", "site A")])
        assert isinstance(store, ClientRegistry)
        for name, policy in (("centre", "centre-v1"), ("plain", None)):
            _, public = centre_keys(folder / name)
            store.add_client(ClientRecord(name, SCOPE, public.read_text(), None, None, policy=policy))
    finally:
        store.close()
    export.unlink()
    (folder / "ready").write_text(f"{children} children, {rows} rows: {report.summary()}\n")
    print(f"site of {children:,} children built in {time.perf_counter() - started:.0f} s: {report.summary()}",
          flush=True)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """`fhir-adapter serve --auth` over the cached site, in its own process group."""

    def __init__(self, folder: pathlib.Path, tmp: pathlib.Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        env = {**os.environ, "FHIR_ADAPTER_EXPORT_DIR": str(tmp / "exports"),
               "FHIR_ADAPTER_AUTH_KEY": str(folder / "auth-key.json"),
               "FHIR_ADAPTER_EXCHANGE_KEY": str(folder / "exchange-key"), "PYTHONPATH": str(ROOT)}
        self.log = (tmp / "serve.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "adapter.cli", "serve", "--auth", "--port", str(self.port), "--workers", "2",
             "--db", f"sqlite:///{folder / 'site.db'}"], env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        import requests
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the site's server stopped: see {tmp / 'serve.log'}")
            try:
                if requests.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError("the site's server did not answer within 120 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def plain_export(base: str, folder: pathlib.Path, out: pathlib.Path) -> tuple[int, float]:
    """(resources, seconds) of a system-level $export by the client without policy, every file
    downloaded (streamed to disk, as the pull does)."""
    from adapter.exchange.policy import load_policy
    from adapter.exchange.site_client import PullOptions, SiteClient, download, kick_off, load_client_key, wait_for_manifest
    out.mkdir(parents=True, exist_ok=True)
    options = PullOptions("site-a", base, "plain", load_client_key(folder / "plain" / "centre-private.jwk.json"),
                          load_policy(ROOT / "mappings" / "exchange" / "centre-v1.yaml"), out, since=None)
    started = time.perf_counter()
    site = SiteClient(options)
    status_url = kick_off(site, None)
    manifest = wait_for_manifest(site, status_url, lambda _: None)
    count = 0
    for n, item in enumerate(manifest["output"]):
        path = out / f"{n}.ndjson"
        download(site, item["url"], path)
        with path.open("rb") as handle:
            count += sum(1 for line in handle if line.strip())
        path.unlink()
    seconds = time.perf_counter() - started
    site.delete(status_url)
    return count, seconds


def _hwm_kb(pid: int) -> int:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pull(base: str, folder: pathlib.Path, db: str, state: pathlib.Path, code: pathlib.Path = ROOT) -> dict[str, Any]:
    """Of `fhir-adapter exchange pull` run as a child process: resources received, seconds, CPU
    seconds (it and its verifying workers), the peak RSS (kB: VmHWM sampled, ru_maxrss at exit),
    the peak summed PSS of it and its workers, and its summary line."""
    command = [sys.executable, "-m", "adapter.cli", "exchange", "pull", "--site", "site-a", "--from", base,
               "--client-id", "centre", "--key", str(folder / "centre" / "centre-private.jwk.json"),
               "--since", "all", "--state", str(state), "--db", db]
    errors = state.parent / "pull.err"
    started = time.perf_counter()
    with errors.open("wb") as err:
        process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(code)}, cwd=code, stdout=subprocess.PIPE,
                                   stderr=err)
    peak = [0, 0]  # the puller's VmHWM; the summed PSS of the puller and its verifying workers
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _hwm_kb(process.pid))
            peak[1] = max(peak[1], sum(_memory_kb(pid)[1] for pid in _family(process.pid)))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    if process.returncode != 0 or "resources received" not in summary:
        raise RuntimeError(f"the pull failed ({process.returncode}): {summary}\n"
                           f"{errors.read_text()[-2000:]}")
    return {"pulled": int(summary.split(": ", 1)[1].split()[0]), "pull_s": seconds, "summary": summary,
            "cpu": usage.ru_utime + usage.ru_stime, "hwm": peak[0] / 1024, "maxrss": usage.ru_maxrss / 1024,
            "pss": peak[1] / 1024}


def _centre_db(kind: str, tmp: pathlib.Path, label: str, code: pathlib.Path = ROOT) -> tuple[str, str]:
    """(URL, PostgreSQL schema or '') of an empty centre store holding the protocol only, made
    by `code` (another revision's schema may differ: its migrations)."""
    schema = ""
    if kind == "sqlite":
        url = f"sqlite:///{tmp / f'centre-{label}.db'}"
    else:
        import psycopg
        base = PG_DEFAULT if kind == "postgresql" else kind
        schema = f"bench_exchange_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(base.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    subprocess.run([sys.executable, "-c", "import sys; from adapter.exchange.demo import prepare_centre; "
                    "prepare_centre(sys.argv[1])", url], env={**os.environ, "PYTHONPATH": str(code)}, cwd=code,
                   check=True)
    return url, schema


def _drop(kind: str, schema: str) -> None:
    if schema:
        import psycopg
        base = PG_DEFAULT if kind == "postgresql" else kind
        with psycopg.connect(base.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def measure(children: int, kind: str, tmp: pathlib.Path, codes: dict[str, pathlib.Path],
            rounds: int) -> list[dict[str, Any]]:
    """A row per code: the plain export's figures and the median round of that code's pull (the
    codes take turns, the first one first in odd rounds, last in even ones)."""
    folder = _site(children)
    server = _Server(folder, tmp)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in codes}
    try:
        plain_n, plain_s = plain_export(server.base, folder, tmp / f"plain-{children}")
        for turn, label in turns(list(codes), rounds):
            schema, name = "", f"{children}-{turn}-{re.sub('[^A-Za-z0-9]', '_', label)}"
            try:
                db, schema = _centre_db(kind, tmp, name, codes[label])
                state = tmp / f"state-{name}"
                state.mkdir()
                pulled = pull(server.base, folder, db, state, codes[label])
            finally:
                _drop(kind, schema)
            runs[label].append(pulled)
            print(f"{children:,} children, {label}, round {turn + 1}: {pulled['summary']} "
                  f"({pulled['pull_s']:.1f} s)", flush=True)
    finally:
        server.stop()
    return [{"children": children, "code": label, "plain": plain_n, "plain_s": plain_s,
             **sorted(found, key=lambda r: r["pull_s"])[len(found) // 2]} for label, found in runs.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--sizes", help="children per size, e.g. 2500,10000 (default: N/4 and N)")
    parser.add_argument("--db", default="sqlite", help="the centre's store: sqlite (a temporary file), "
                                                     "postgresql (a schema of its own at FHIR_ADAPTER_BENCH_PG) "
                                                     "or a postgresql:// URL")
    parser.add_argument("--versus", metavar="REV", help="also pull with this git revision's code, in turns")
    parser.add_argument("--rounds", type=int, default=1, help="pulls per code and size (the median is shown)")
    args = parser.parse_args()
    codes = {"this tree": ROOT}
    if args.versus:
        codes = {args.versus: revision_tree(args.versus), **codes}
    sizes = sorted({int(s) for s in args.sizes.split(",")} if args.sizes
                   else {max(1, args.children // 4), args.children})
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-exchange-") as tmp:
        for children in sizes:
            rows.extend(measure(children, args.db, pathlib.Path(tmp), codes, args.rounds))
    print(f"\ncentre store: {args.db}; site: SQLite, `fhir-adapter serve --auth` (gunicorn, 2 workers); "
          f"2 cores shared")
    print("| children | code | plain $export: resources, s, resources/s | pull: resources, s, resources/s "
          "(target >= 20,000) | pull / plain | pull CPU s (with its workers), resources per CPU s "
          "| pull peak RSS, VmHWM / ru_maxrss (target < 200 MB) | peak PSS, pull + workers |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        plain_rate, pull_rate = r["plain"] / r["plain_s"], r["pulled"] / r["pull_s"]
        print(f"| {r['children']:,} | {r['code']} | {r['plain']:,.0f}, {r['plain_s']:.1f}, {plain_rate:,.0f} | "
              f"{r['pulled']:,.0f}, {r['pull_s']:.1f}, {pull_rate:,.0f} | {pull_rate / plain_rate:.2f}x | "
              f"{r['cpu']:.1f}, {r['pulled'] / r['cpu']:,.0f} | {r['hwm']:,.0f} / {r['maxrss']:,.0f} MB | "
              f"{r['pss']:,.0f} MB |")
    if args.versus:
        for children in sizes:
            before, after = (next(r for r in rows if r["children"] == children and r["code"] == c) for c in codes)
            print(f"{children:,} children, this tree / {args.versus}: pull resources/s "
                  f"{(after['pulled'] / after['pull_s']) / (before['pulled'] / before['pull_s']):.2f}x, "
                  f"resources per CPU s {(after['pulled'] / after['cpu']) / (before['pulled'] / before['cpu']):.2f}x")
    load = pathlib.Path("/proc/loadavg").read_text().split()[:3]
    print(f"load average at the end (2 cores, shared): {' '.join(load)}")

if __name__ == "__main__":
    main()
