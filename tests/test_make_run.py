"""`make run` as configured by the Makefile (its relative SQLite URL, run from another working
directory), over real HTTP: a Bulk Data export's files download, and what holds identifiers
(the store, the export files) is readable by its owner only."""
from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import stat
import subprocess
import sys
import time

import pytest
import requests

from conftest import ROOT, wait_until_serving

CLI = str(pathlib.Path(sys.executable).parent / "fhir-adapter")


def make_run_command() -> list[str]:
    """The `run` target's command line with the Makefile's own DB."""
    makefile = (ROOT / "Makefile").read_text()
    db = re.search(r"^DB \?= (.+)$", makefile, re.M).group(1).strip()
    recipe = re.search(r"^run:.*\n\t(.+)$", makefile, re.M).group(1)
    assert recipe == "$(BIN)/fhir-adapter demo --db $(DB)", recipe
    assert not db.startswith("sqlite:////"), "the test is about a relative SQLite path"
    return [CLI, "demo", "--db", db]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_make_run_serves_bulk_export_files(tmp_path):
    port = _free_port()
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("FHIR_ADAPTER_DB", None)
    env.pop("FHIR_ADAPTER_EXPORT_DIR", None)
    proc = subprocess.Popen([*make_run_command(), "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        assert wait_until_serving(f"{base}/metadata", seconds=180).status_code == 200
        kick = requests.get(f"{base}/Group/site-c-cohort/$export", params={"_type": "Patient,Observation"},
                            headers={"Prefer": "respond-async", "Accept": "application/fhir+json"}, timeout=30)
        assert kick.status_code == 202, kick.text
        for _ in range(600):
            status = requests.get(kick.headers["Content-Location"], timeout=30)
            if status.status_code != 202:
                break
            time.sleep(0.05)
        assert status.status_code == 200, status.text
        output = status.json()["output"]
        assert {o["type"] for o in output} == {"Patient", "Observation"}
        for item in output:
            got = requests.get(item["url"], timeout=30)
            assert got.status_code == 200, got.text
            lines = got.text.splitlines()
            assert len(lines) == item["count"] and json.loads(lines[0])["resourceType"] == item["type"]
        patients = next(o for o in output if o["type"] == "Patient")
        assert patients["count"] == 15

        # An EHR syncing by _lastUpdated sees everything the demo wrote (it saw 17 of 6,032).
        for rtype in ("Observation", "Patient", "Procedure"):
            every = requests.get(f"{base}/{rtype}?_summary=count", timeout=30).json()["total"]
            since = requests.get(f"{base}/{rtype}?_lastUpdated=ge2000-01-01&_summary=count", timeout=30).json()
            assert every > 0 and since["total"] == every, rtype

        # Files that hold identifiers: the owner's alone (the umask notwithstanding).
        var = tmp_path / "var"
        exports = var / "exports"
        job = next(p for p in exports.iterdir() if p.is_dir())
        assert [_mode(p) for p in (var, exports, job)] == [0o700] * 3
        private = [var / "adapter.db", *job.iterdir()]
        private += [p for p in (var / "adapter.db-wal", var / "adapter.db-shm") if p.exists()]
        assert {p.name: _mode(p) for p in private} == {p.name: 0o600 for p in private}
    finally:
        proc.terminate()
        proc.wait(timeout=15)
