"""kill -9 in the middle of an ingest, then the same ingest again: the store ends equal to a
clean ingest of the same export (same resources, same bytes but for meta, an index that matches
them), on both stores. A row's resources commit together, so a killed run leaves whole rows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapter.mapping.ingest import ingest
from adapter.mapping.spec import load_mapping
from adapter.protocol.spec import SPECS
from adapter.study.load import load_protocol
from adapter.store.schema import resources
from adapter.store.sql_store import SqlStore
from bench.site_ingest import _family, write_export
from conftest import ROOT, postgres_schema
from test_write_paths import index_mismatches

KEY = "kill-test-key-0123456789"
SPEC = ROOT / "mappings" / "sites" / "site-a.yaml"


def _content(store: SqlStore) -> dict[tuple[str, str], dict]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(resources.c.res_type, resources.c.res_id, resources.c.data)
                            .where(~resources.c.deleted)).all()
    out = {}
    for rtype, rid, data in rows:
        body = json.loads(data)
        body.pop("meta", None)
        body.pop("recorded", None)  # a Provenance's time of recording differs between the runs
        out[(rtype, rid)] = body
    return out


def _state(pid: int) -> str:
    try:
        return "(" + Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] + ")"
    except OSError:
        return "(gone)"


def _count(store: SqlStore) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(resources)).scalar_one()


@pytest.mark.slow
def test_a_killed_ingest_run_again_ends_equal_to_a_clean_one(db_url, store, tmp_path):
    export = tmp_path / "export.csv"
    write_export(60, export)  # more rows than the write stage takes at once: its workers live on
    cli = [str(Path(sys.executable).parent / "fhir-adapter"), "ingest", "--site", "site-a",
           "--mapping", str(SPEC), "--db", db_url, "--workers", "2", str(export)]
    env = {**os.environ, "UCMSC_SITE_A_KEY": KEY}
    protocol = load_protocol(db_url, SPECS / "ucmsc-cp-v1.yaml")[0]  # what the rows refer to
    proc = subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _count(store) < protocol + 200 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the ingest ended before it could be killed"
    workers = [pid for pid in _family(proc.pid) if pid != proc.pid]
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)  # mid-write: some rows stored, most not
    proc.wait()
    # Its workers go with it (they were left waiting for ever, 130 MB and a connection each).
    for _ in range(100):
        if not any(Path(f"/proc/{pid}").exists() and "(Z)" not in _state(pid) for pid in workers):
            break
        time.sleep(0.1)
    assert [pid for pid in workers if Path(f"/proc/{pid}").exists() and "(Z)" not in _state(pid)] == []
    killed_at = _count(store)
    assert killed_at > 0
    again = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode in (0, 1), again.stderr  # 1: the export has rows to reject, by design
    assert index_mismatches(store) == []

    clean_db = postgres_schema() if db_url.startswith("postgresql") else nullcontext(f"sqlite:///{tmp_path / 'clean.db'}")
    with clean_db as clean_url:
        load_protocol(clean_url, SPECS / "ucmsc-cp-v1.yaml")
        clean = SqlStore(clean_url)
        try:
            ingest(load_mapping(SPEC), [export], clean, KEY.encode())
            expected = _content(clean)
        finally:
            clean.close()
    got = _content(store)
    assert killed_at < len(expected)  # the kill really came before the end
    assert got.keys() == expected.keys()
    assert [k for k in expected if got[k] != expected[k]] == []
    print(f"killed after {killed_at} of {len(expected)} resources; the second run completed it")
