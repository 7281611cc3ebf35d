"""The HTTP fuzzer (bench/fuzz.py) in the suite, bounded, on both stores, against the gateway as
it is deployed (`fhir-adapter serve`: gunicorn, its own process, real HTTP): never a 5xx, every
error an OperationOutcome, no answer over 5 s, and a refused request writes nothing.
`python -m bench.fuzz --minutes N` runs the same draws for longer."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings

from bench.fuzz import FHIR, Probe, check, probes, send
from conftest import table_counts, wait_until_serving

EXAMPLES = 1200  # per store: about 15 s each on this machine


@pytest.fixture
def served(db_url: str, store, tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = str(Path(sys.executable).parent / "fhir-adapter")
    proc = subprocess.Popen([cli, "serve", "--port", str(port), "--db", db_url, "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            env={**os.environ, "FHIR_ADAPTER_EXPORT_DIR": str(tmp_path / "exports")})
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        wait_until_serving(f"{base}/metadata")
        requests.put(f"{base}/Patient/p1", json={"resourceType": "Patient", "id": "p1"},
                     headers={"Content-Type": FHIR}, timeout=30)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(probe=probes())
def test_no_request_crashes_hangs_or_half_writes(store, served, http, probe: Probe):
    before = table_counts(store)
    response, seconds = send(http, served, probe)
    assert check(probe, response, seconds) == []
    if response.status_code >= 400:
        assert table_counts(store) == before, str(probe)
