"""The centre's nightly pull of a quiet site, as cron runs it: `exchange pull --since auto` with
nothing new at the site exits 0, writes nothing and keeps `exchange status` happy, also after a
run that was killed with every file verified and loaded (issue 25, item 2)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from adapter.exchange.pull_record import PULL_SYSTEM
from adapter.fhir.search import parse_search
from adapter.store import open_store
from conftest import ROOT
from exchange_helpers import Throttle, topology


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _history_rows(url: str) -> int:
    from sqlalchemy import func, select

    from adapter.store.schema import history
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(history)).scalar_one())
    finally:
        store.close()


def _pull_provenances(url: str) -> list[dict]:
    store = open_store(url)
    try:
        page = store.search(parse_search("Provenance", [("_tag", f"{PULL_SYSTEM}|site-b"), ("_count", "100")]))
        return [json.loads(e.data) for e in page.entries]
    finally:
        store.close()


@pytest.mark.slow
def test_a_quiet_site_pulled_again_exits_0_writes_nothing_and_is_not_overdue(kind, tmp_path):
    proxy = Throttle()
    proxy.slow = False
    try:
        with topology(kind, tmp_path, ("site-b",), base_urls={"site-b": f"{proxy.root}/fhir"}) as t:
            proxy.target = t.gateways["site-b"].root
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            cli = [sys.executable, "-m", "adapter.cli", "exchange"]
            pull = [*cli, "pull", "--site", "site-b", "--from", f"{proxy.root}/fhir", "--client-id", "centre",
                    "--key", str(t.key_file), "--state", str(t.state), "--db", t.urls["centre"], "--overlap", "1"]
            status = [*cli, "status", "--site", "site-b", "--state", str(t.state), "--db", t.urls["centre"]]

            # The first pull is killed after it loaded every file, while it tells the site it is done.
            proxy.hold_deletes = True
            process = subprocess.Popen(pull, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 120
            while proxy.deletes_held == 0 and time.monotonic() < deadline:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            proxy.hold_deletes = False
            pending = json.loads((t.state / "site-b" / "pending.json").read_text())
            assert pending["files"] and all(f.get("loaded") for f in pending["files"].values())

            # The next run resumes it: every file was verified by the killed run, none again here.
            resumed = subprocess.run(pull, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert resumed.returncode == 0, resumed.stderr + resumed.stdout
            assert "resuming" in resumed.stderr
            provenances = _pull_provenances(t.urls["centre"])
            assert len(provenances) == 1 and provenances[0]["policy"] == [
                "http://ucmsc-cp.example.org/fhir/exchange-policy/centre-v1/1.0.0"]
            assert t.at_centre("site-b") == t.shared("site-b")

            # Nightly, with nothing new since: a success that writes nothing, again and again.
            time.sleep(1.5)  # past the overlap
            written = _history_rows(t.urls["centre"])
            for _ in range(2):
                quiet = subprocess.run(pull, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
                assert quiet.returncode == 0, quiet.stderr + quiet.stdout
                # only the quasi-identifier types, which a k-anonymous policy sends whole: unchanged
                assert re.search(r"site-b: (\d+) resources received \(0 written, \1 unchanged\), 0 deleted, "
                                 r"0 file\(s\) refused", quiet.stdout), quiet.stdout
                assert not (t.state / "site-b" / "pending.json").exists()
            assert _history_rows(t.urls["centre"]) == written
            assert len(_pull_provenances(t.urls["centre"])) == 1
            said = subprocess.run(status, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            assert said.returncode == 0 and "OVERDUE" not in said.stdout, said.stdout + said.stderr
    finally:
        proxy.close()
