"""Everything an operator runs against a live store loses nothing (issue 25, item 1).

`fhir-adapter serve --auth` (the audit on, as on every deployed server) takes a steady load of
writes while every command of the CLI that takes `--db` runs against the same store, one after
another. Then every acknowledged write is read back, many times (each read a new connection,
so every worker answers some), and again after a restart; and every acknowledged write has its
AuditEvent. On SQLite a command that opened and closed the database beside the server's
connections used to delete the WAL under them: reads alternated between versions and every
write after it was gone after a restart.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import click
import pytest
import requests

from adapter.cli import main as cli_main
from adapter.demo_data import DEMO_KEY
from conftest import DEMO, ROOT, wait_until_serving

CLI = str(pathlib.Path(sys.executable).parent / "fhir-adapter")
SCOPE = "system/Patient.cruds"


def _commands_with_db() -> set[str]:
    def walk(command: click.Command, path: tuple[str, ...]) -> Iterator[str]:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))
        elif any(p.name == "db" for p in command.params):
            yield " ".join(path)
    return set(walk(cli_main, ()))


def _runs(folder: pathlib.Path, jwks: pathlib.Path) -> dict[str, tuple[list[str], set[int]]]:
    """How each command is run against the live store, with the exit codes that are right."""
    site_a = ROOT / "fixtures" / "sites" / "site-a"
    return {
        "init-db": (["init-db"], {0}),
        "upgrade-db": (["upgrade-db"], {0}),
        "demo": (["demo", "--no-serve"], {0}),  # the protocol, the demo and the four sites
        "load": (["load", str(DEMO)], {0}),
        "cohorts": (["cohorts"], {0}),
        "protocol load": (["protocol", "load", str(ROOT / "mappings" / "protocol" / "ucmsc-cp-v1.yaml")], {0}),
        "protocol apply": (["protocol", "apply", "--plan", "ucmsc-cp-arm-1", "--subject", "Patient/demo-child-01",
                            "--start", "2026-01-05", "--persist"], {0}),
        "protocol adherence": (["protocol", "adherence", "ucmsc-cp-demo-child-01", "--as-of", "2026-06-01"], {0}),
        "clients add": (["clients", "add", "operator-added", "--jwks", str(jwks), "--scope", "system/*.rs"], {0}),
        "clients list": (["clients", "list"], {0}),
        "clients revoke": (["clients", "revoke", "operator-added"], {0}),
        "ingest": (["ingest", "--site", "site-a", "--mapping", str(ROOT / "mappings" / "sites" / "site-a.yaml"),
                    "--key-file", str(folder / "site-a.key"), *(str(p) for p in sorted(site_a.glob("export.*")))],
                   {0, 1}),  # 1: its expected rejections
        "audit": (["audit", "--client", "loader"], {0}),
        "exchange check": (["exchange", "check", "centre-v1"], {0, 1}),
        # A site that does not answer: the pull opens the store, logs the attempt and says so.
        "exchange pull": (["exchange", "pull", "--site", "site-z", "--from", "http://127.0.0.1:9/fhir",
                           "--client-id", "centre", "--key", str(folder / "centre.jwk.json"), "--retries", "0",
                           "--timeout", "2", "--state", str(folder / "exchange")], {1}),
        "exchange status": (["exchange", "status", "--state", str(folder / "exchange")], {0, 1}),
        "outcomes": (["outcomes"], {0}),
    }


# `serve` is the server under test: a second one on the same store is the restart below.
NOT_RUN = {"serve"}


def _key() -> Any:
    from joserfc.jwk import ECKey
    return ECKey.generate_key("P-384", parameters={"kid": "loader-1"}, private=True)


class Writer:
    """Creates, updates and deletes Patients as one client, one request after another; keeps
    what was acknowledged (id -> last version, or None once deleted) and how many writes."""

    def __init__(self, base: str, key: Any) -> None:
        self.base, self.key = base, key
        self.stop = threading.Event()
        self.state: dict[str, int | None] = {}
        self.writes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.token = ""
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _fetch_token(self) -> None:
        from authlib.integrations.requests_client import OAuth2Session
        from authlib.oauth2.rfc7523 import PrivateKeyJWT
        token_url = self.base.rsplit("/fhir", 1)[0] + "/auth/token"
        auth = PrivateKeyJWT(token_url, alg="ES384", headers={"kid": self.key.kid},
                             claims={"exp": int(time.time()) + 240})
        with OAuth2Session("loader", self.key, token_endpoint_auth_method=auth, scope=SCOPE) as session:
            self.token = str(session.fetch_token(token_url)["access_token"])

    def _send(self, http: requests.Session, method: str, pid: str, body: Any = None) -> requests.Response:
        for _ in range(2):
            answer = http.request(method, f"{self.base}/Patient/{pid}", json=body, timeout=60, headers={
                "Authorization": f"Bearer {self.token}", "Content-Type": "application/fhir+json"})
            if answer.status_code != 401:
                return answer
            self._fetch_token()
        return answer

    def _run(self) -> None:
        n = 0
        with requests.Session() as http:
            self._fetch_token()
            while not self.stop.is_set():
                n += 1
                pid = f"live-{n % 40}"  # a few ids written again and again: versions to lose
                if n % 7 == 0 and self.state.get(pid) is not None:
                    method, body = "DELETE", None
                else:
                    method, body = "PUT", {"resourceType": "Patient", "id": pid, "birthDate": f"2019-01-{1 + n % 28:02d}"}
                answer = self._send(http, method, pid, body)
                if answer.status_code in (200, 201) and method == "PUT":
                    self.state[pid] = int(answer.json()["meta"]["versionId"])
                    self.writes[pid] += 1
                elif answer.status_code in (200, 204) and method == "DELETE":
                    self.state[pid] = None
                    self.writes[pid] += 1
                else:
                    self.failures.append(f"{method} {pid}: {answer.status_code} {answer.text[:300]}")
                time.sleep(0.01)

    def check_read_back(self, base: str, times: int) -> list[str]:
        wrong = []
        if not self.token:
            self._fetch_token()
        for pid, version in sorted(self.state.items()):
            for _ in range(times):  # a new connection each: gunicorn hands them to every worker
                answer = requests.get(f"{base}/Patient/{pid}", headers={"Authorization": f"Bearer {self.token}"},
                                      timeout=60)
                if answer.status_code == 401:
                    self.base = base
                    self._fetch_token()
                    answer = requests.get(f"{base}/Patient/{pid}", timeout=60,
                                          headers={"Authorization": f"Bearer {self.token}"})
                got = answer.json()["meta"]["versionId"] if answer.status_code == 200 else answer.status_code
                expected = str(version) if version is not None else 410
                if got != expected:
                    wrong.append(f"{pid}: {got} where {expected} was acknowledged")
        return wrong


def _serve(db: str, folder: pathlib.Path, env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(folder / f"serve-{port}.log", "wb")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen([CLI, "serve", "--auth", "--port", str(port), "--db", db, "--workers", "2"],
                            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}/fhir"
    wait_until_serving(f"{base}/metadata")
    return base, proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=90) == 0


def _write_events(db: str) -> Counter[str]:
    """Acknowledged writes of the loader's, by Patient id, as the audit trail has them."""
    from adapter.audit.trail import audit_events
    from adapter.store import open_store
    store = open_store(db)
    try:
        found: Counter[str] = Counter()
        for event in audit_events(store, "loader"):
            if event["action"] in ("C", "U", "D") and event["outcome"] == "0":
                names = {e["what"]["reference"].split("/")[1] for e in event.get("entity", []) if "what" in e}
                found.update(names)
        return found
    finally:
        store.close()


@pytest.mark.slow
def test_every_cli_command_on_a_live_store_loses_no_acknowledged_write(db_url, tmp_path):
    runs = _runs(tmp_path, tmp_path / "operator.jwks.json")
    assert _commands_with_db() - NOT_RUN == set(runs), "a command that takes --db is missing from this test"
    key = _key()
    (tmp_path / "loader.jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    (tmp_path / "operator.jwks.json").write_text(json.dumps({"keys": [_key().as_dict(private=False)]}))
    (tmp_path / "site-a.key").write_bytes(DEMO_KEY)  # the demo's: the same children, updated in place
    (tmp_path / "centre.jwk.json").write_text(json.dumps(_key().as_dict(private=True)))
    env = {**os.environ, "FHIR_ADAPTER_EXPORT_DIR": str(tmp_path / "exports"),
           "FHIR_ADAPTER_AUDIT_JOURNAL": str(tmp_path / "journal"), "PYTHONPATH": str(ROOT)}
    subprocess.run([CLI, "clients", "add", "loader", "--jwks", str(tmp_path / "loader.jwks.json"), "--scope", SCOPE,
                    "--db", db_url], check=True, capture_output=True, env=env)
    base, proc = _serve(db_url, tmp_path, env)
    writer = Writer(base, key)
    try:
        writer.thread.start()
        for name, (args, codes) in runs.items():
            done = subprocess.run([CLI, *args, "--db", db_url], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode in codes, f"{name}: exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-6000:]}"
        time.sleep(1)
        writer.stop.set()
        writer.thread.join(timeout=120)
        assert not writer.failures, writer.failures[:5]
        assert sum(writer.writes.values()) > 50
        assert writer.check_read_back(base, times=4) == []
        _stop(proc)
        base, proc = _serve(db_url, tmp_path, env)  # the restart: what the server said it wrote is there
        assert writer.check_read_back(base, times=2) == []
        _stop(proc)
        assert _write_events(db_url) == writer.writes
        assert not list((tmp_path / "journal").rglob("*.journal"))
    finally:
        writer.stop.set()
        if proc.poll() is None:
            proc.kill()
