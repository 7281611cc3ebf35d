"""Several gunicorn workers writing the same resources: every version kept, none doubled.

4 worker processes, 800 mixed writes (unconditional updates, If-Match updates, deletes,
creates) from 8 client threads on 12 overlapping resources; then each resource's history must be
the consecutive versions 1..n, n must equal the writes that succeeded, and the current row, the
tombstones and the search index must agree with the history.
"""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from adapter.fhir.search import parse_search
from conftest import observation, wait_until_serving

FHIR_JSON = {"Content-Type": "application/fhir+json"}
IDS = [f"r{i:02d}" for i in range(12)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(db_url: str, home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cli = str(Path(sys.executable).parent / "fhir-adapter")
    proc = subprocess.Popen([cli, "serve", "--port", str(port), "--db", db_url, "--workers", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HOME": str(home)})
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        wait_until_serving(f"{base}/metadata")
    except requests.RequestException:
        proc.kill()
        raise
    return proc, base


def _write(session: requests.Session, base: str, rng: random.Random, n: int) -> tuple[str, str, int]:
    rid = rng.choice(IDS)
    url = f"{base}/Observation/{rid}"
    body = json.dumps(observation(id=rid, note=[{"text": f"write {n}"}]))
    kind = rng.choices(["put", "if-match", "delete", "create"], [50, 25, 15, 10])[0]
    if kind == "put":
        return rid, kind, session.put(url, data=body, headers=FHIR_JSON, timeout=60).status_code
    if kind == "if-match":
        current = session.get(url, timeout=60)
        etag = current.headers.get("ETag", 'W/"0"')
        r = session.put(url, data=body, headers={**FHIR_JSON, "If-Match": etag}, timeout=60)
        return rid, kind, r.status_code
    if kind == "delete":
        r = session.delete(url, timeout=60)
        return rid, "delete-made-version" if "ETag" in r.headers else "delete-noop", r.status_code
    r = session.post(f"{base}/Observation", data=json.dumps(observation()), headers=FHIR_JSON, timeout=60)
    return r.json().get("id", "?"), kind, r.status_code


@pytest.mark.slow
def test_concurrent_workers_lose_and_double_no_version(db_url, store, tmp_path):
    store.update({"resourceType": "Patient", "id": "p1"})  # the observations' subject: checked on write
    proc, base = _start(db_url, tmp_path)
    try:
        def run(worker: int) -> list[tuple[str, str, int]]:
            rng = random.Random(worker)
            with requests.Session() as session:
                # Each write's content is its own (worker and n): an unchanged update makes no version.
                return [_write(session, base, rng, worker * 1000 + n) for n in range(100)]
        with ThreadPoolExecutor(8) as pool:
            results = [r for batch in pool.map(run, range(8)) for r in batch]
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    assert len(results) == 800
    statuses = Counter(status for _, _, status in results)
    assert set(statuses) <= {200, 201, 204, 412}, statuses  # no 409, no 5xx: no lost race, no deadlock
    assert statuses[412] > 0  # the If-Match writers really did collide
    made = Counter(rid for rid, kind, status in results
                   if (kind in ("put", "if-match", "create") and status in (200, 201))
                   or (kind == "delete-made-version" and status == 204))
    for rid, writes in made.items():
        page = store.history("Observation", rid, count=1000)
        versions = sorted(e.version_id for e in page.entries)
        assert versions == list(range(1, writes + 1)), rid
        newest = page.entries[0]
        found = store.search(parse_search("Observation", [("_id", rid)])).total
        if newest.deleted:
            assert found == 0
            assert store.history("Observation", rid, count=1).entries[0].method == "DELETE"
        else:
            assert found == 1
            assert store.read("Observation", rid).version_id == newest.version_id
