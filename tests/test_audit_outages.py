"""An audit trail that no request and no outage can blank (issue 25, item 3): a request whose
event the database refuses does not take its batch with it; events wait on disk while the
database is away or the disk is full, and a killed process's events are written by the next
writer of the store. Every answered request has its event once the database is back."""
from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adapter.audit.writer import AuditWriter
from conftest import wait_until_serving
from pg_server import OwnPostgres
from test_audit import CLI, audit_events

FHIR = {"Content-Type": "application/fhir+json"}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _served(db_url: str, folder: pathlib.Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([CLI, "serve", "--port", str(port), "--db", db_url, "--workers", "2", "--audit"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                            env={**os.environ, "FHIR_ADAPTER_EXPORT_DIR": str(folder / "exports"),
                                 "FHIR_ADAPTER_AUDIT_JOURNAL": str(folder / "journal")})
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/fhir/metadata")
        yield f"http://127.0.0.1:{port}/fhir", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=90)
        log.close()


def _marker(event: dict[str, Any]) -> str | None:
    """The load's request an event is of: `load-N` in what it names or in its query."""
    for entity in event.get("entity", []):
        reference = (entity.get("what") or {}).get("reference", "")
        if "load-" in reference:
            return reference.split("/")[1]
        if entity.get("query"):
            query = base64.b64decode(entity["query"]).decode(errors="replace")
            if "load-" in query:
                return "load-" + query.split("load-")[1].split("&")[0]
    return None


class Load:
    """Requests one after another: a create, a read of it, a search for it, and every fifth a
    search holding a NUL (whose event PostgreSQL's JSON refuses as it comes). Each answered
    request is counted by its marker; a request that got no answer is not."""

    def __init__(self, base: str) -> None:
        self.base, self.stop = base, threading.Event()
        self.answered: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.acknowledged: list[str] = []
        self.bad: list[str] = []  # answers that are no OperationOutcome 503 with Retry-After, or a 5xx
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        with requests.Session() as http:
            while not self.stop.is_set():
                n += 1
                pid = f"load-{n}"
                calls = [("PUT", f"Patient/{pid}", {"json": {"resourceType": "Patient", "id": pid}}),
                         ("GET", f"Patient/{pid}", {}), ("GET", f"Patient?_id={pid}", {})]
                if n % 5 == 0:
                    calls.append(("POST", "Observation/_search", {"data": f"patient=%00&_id={pid}", "headers": {
                        "Content-Type": "application/x-www-form-urlencoded"}}))
                for method, path, extra in calls:
                    headers = {**FHIR, **extra.pop("headers", {})}
                    try:
                        answer = http.request(method, f"{self.base}/{path}", headers=headers, timeout=30, **extra)
                    except requests.RequestException:
                        time.sleep(0.05)
                        continue
                    self.answered[pid] += 1
                    self.statuses[answer.status_code] += 1
                    if method == "PUT" and answer.status_code in (200, 201):
                        self.acknowledged.append(pid)
                    if answer.status_code >= 500 and not (
                            answer.status_code == 503 and answer.headers.get("Retry-After")
                            and answer.json().get("resourceType") == "OperationOutcome"):
                        self.bad.append(f"{method} {path}: {answer.status_code} {answer.text[:200]}")

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def _check_trail(load: Load, events: list[dict[str, Any]]) -> None:
    found = Counter(m for m in map(_marker, events) if m)
    missing = {pid: n - found[pid] for pid, n in load.answered.items() if found[pid] < n}
    assert not missing, f"{sum(missing.values())} answered requests have no AuditEvent: {sorted(missing)[:10]}"
    assert found == load.answered  # and none twice
    created = {_marker(e) for e in events if e["action"] == "C" and e["outcome"] == "0"}
    assert set(load.acknowledged) <= created


@pytest.mark.slow
def test_a_database_restart_of_20_s_under_load_loses_no_event(tmp_path):
    postgres = OwnPostgres()
    postgres.start()
    try:
        with _served(postgres.url, tmp_path) as (base, proc), Load(base) as load:
            time.sleep(3)
            postgres.stop()
            time.sleep(20)
            during = dict(load.statuses)
            postgres.start()
            time.sleep(6)
        assert during.get(503, 0) > 0 and load.statuses[201] > 0, load.statuses
        assert not load.bad, load.bad[:5]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
        events = audit_events(postgres.url)
        _check_trail(load, events)
        assert not list((tmp_path / "journal").rglob("*.journal"))  # nothing left owed
    finally:
        postgres.close()


@pytest.mark.slow
def test_a_full_disk_answers_503_and_the_trail_is_whole_once_there_is_room(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        if os.environ.get("FHIR_ADAPTER_REQUIRE_PG") == "1":  # CI: root on a machine that mounts tmpfs
            pytest.fail(f"cannot mount a small tmpfs: {mounted.stderr.decode()}")
        pytest.skip(f"cannot mount a small tmpfs (a full disk is made on one): {mounted.stderr.decode()}")
    try:
        db_url = f"sqlite:///{disk / 'adapter.db'}"
        subprocess.run([CLI, "init-db", "--db", db_url], check=True, capture_output=True)
        with _served(db_url, tmp_path) as (base, proc):
            with Load(base) as load:
                time.sleep(2)
                filler = disk / "filler"
                # The disk full, as another program would leave it. Seen once in a full run on a
                # busy machine: the open itself found the 64 MB already full, so it is tolerated
                # and what was on the disk said, should the trail then not be whole.
                with contextlib.suppress(OSError), open(filler, "wb") as out:
                    while True:
                        out.write(b"\0" * (1 << 16))
                        out.flush()
                on_disk = {str(p.relative_to(disk)): p.stat().st_size for p in disk.rglob("*") if p.is_file()}
                time.sleep(4)
                during = dict(load.statuses)
                filler.unlink(missing_ok=True)
                time.sleep(4)
            assert during.get(503, 0) > 0, (during, on_disk)
            assert not load.bad, load.bad[:5]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=90) == 0
        _check_trail(load, audit_events(db_url))
        check = subprocess.run([sys.executable, "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1])"
                                ".execute('PRAGMA integrity_check').fetchone()[0])", str(disk / "adapter.db")],
                               capture_output=True, text=True, check=True)
        assert check.stdout.strip() == "ok"
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


_KILLED = """
import os, signal, sys
from adapter.audit.record import AccessRecord
from adapter.audit.writer import AuditWriter
writer = AuditWriter(sys.argv[1], "host", sys.argv[2])
writer._start()  # its thread, which takes the writer's lock before it touches the journal or the store
with writer._lock:  # held until the kill: the records are journaled, none written (on a slow machine
    # too, where the thread's first pass or its half-second batch came between two records)
    for n in range(50):
        writer.record(AccessRecord("GET", f"Patient/load-{n}", "", 200, "read", None, "Patient", f"load-{n}",
                                   None, None, None, None, "c1", None, True, "127.0.0.1", 1.0e9 + n, None))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_events_of_a_killed_process_are_written_by_the_next_writer(db_url, tmp_path):
    journal = tmp_path / "journal"
    killed = subprocess.run([sys.executable, "-c", _KILLED, db_url, str(journal)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Its writer may have written what it had gathered when it started (a busy machine is slow
    # to kill): what it had not is on disk, in one segment or more.
    written_before = {_marker(e) for e in audit_events(db_url)}
    assert len(written_before) < 50 and list(journal.rglob("*.journal"))
    writer = AuditWriter(db_url, "host", str(journal))
    try:
        from adapter.audit.record import AccessRecord
        writer.record(AccessRecord("GET", "metadata", "", 200, None, None, None, None, None, None, None, None,
                                   "c1", None, True, "127.0.0.1", 2.0e9, None))
        writer.flush()
        events = audit_events(db_url)
        assert sorted(filter(None, map(_marker, events))) == sorted(f"load-{n}" for n in range(50))
        assert len(events) == 51
        assert not list(journal.rglob("*.journal"))
        writer.close()
        # A second writer finds nothing more to write, and writing a journal twice doubles nothing.
        AuditWriter(db_url, "host", str(journal)).close()
        assert len(audit_events(db_url)) == 51
    finally:
        writer.close()


def test_an_event_the_database_refuses_is_written_alone_and_its_batch_goes_on(db_url, tmp_path):
    from adapter.audit.record import AccessRecord
    writer = AuditWriter(db_url, "host", str(tmp_path / "journal"))
    try:
        for n in range(20):
            # A NUL in what a request names: PostgreSQL's JSON refused the whole batch.
            query = "patient=%00&_id=load-{n}" if n % 4 else f"_id=load-{n}"
            writer.record(AccessRecord("POST", "Observation/_search", query.format(n=n), 200, "search-type", None,
                                       "Observation", None, None, None, None, None, "c1", None, True,
                                       "127.0.0.1", 1.0e9 + n, b'{"issue":[{"diagnostics":"bad \\u0000 value"}]}'))
        writer.flush()
        events = audit_events(db_url)
        assert sorted(map(_marker, events)) == sorted(f"load-{n}" for n in range(20))
        assert writer.lost == 0
        assert all("\x00" not in str(e) for e in events)
    finally:
        writer.close()
