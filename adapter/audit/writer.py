"""The audit writer: a queue filled by the request path and a thread per process that turns what
it holds into AuditEvents and writes them in batches through the store's one write path.

The thread starts on the first record in a process, so a gunicorn worker starts its own after the
fork (a thread does not survive a fork). A clean shutdown loses nothing: `flush_all` runs at exit
and from gunicorn's worker_exit hook, and drains the queue in the calling thread if need be.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from typing import Any

from adapter.audit.events import audit_event
from adapter.audit.record import AccessRecord
from adapter.fhir.validation import validate
from adapter.store.sql_store import SqlStore

__all__ = ["AuditWriter", "flush_all"]

log = logging.getLogger("adapter.audit")
BATCH = 500  # events per transaction at most
_writers: list[AuditWriter] = []
_registry_lock = threading.Lock()


class AuditWriter:
    def __init__(self, database_url: str, observer: str) -> None:
        self.database_url = database_url
        self.observer = observer
        self._queue: queue.SimpleQueue[AccessRecord | threading.Event | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # one writer of the store at a time: the thread or a flush
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._store: SqlStore | None = None
        with _registry_lock:
            _writers.append(self)

    def record(self, item: AccessRecord) -> None:
        if self._pid != os.getpid():
            self._start()
        self._queue.put(item)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # In a forked child the parent's queue, thread and connections are not ours.
            self._queue = queue.SimpleQueue()
            self._store = None
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._pid = os.getpid()
            self._thread.start()

    def flush(self, timeout: float = 30.0) -> None:
        """Return once everything recorded before the call is in the database."""
        if self._pid != os.getpid():
            return  # nothing was recorded in this process
        thread = self._thread
        if thread is not None and thread.is_alive():
            done = threading.Event()
            self._queue.put(done)
            if done.wait(timeout):
                return
        self._drain()  # the thread is gone (interpreter shutdown) or stuck: write from here

    def close(self) -> None:
        self.flush()
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)
        if self._store is not None:
            self._store.close()
            self._store = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items: list[AccessRecord | threading.Event] = [first]
            stop = False
            while len(items) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                items.append(item)
            self._write(items)
            if stop:
                return

    def _drain(self) -> None:
        items: list[Any] = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._write(items)

    def _write(self, items: list[Any]) -> None:
        records = [i for i in items if isinstance(i, AccessRecord)]
        with self._lock:
            try:
                if records:
                    self._load([audit_event(r, self.observer) for r in records])
            except Exception:  # the thread must live on: log, and keep serving the next ones
                log.exception("could not write %d audit events", len(records))
        for item in items:
            if isinstance(item, threading.Event):
                item.set()

    def _load(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            issues = validate(event)
            if issues:  # a bug of ours; the record of the access is still kept
                log.error("AuditEvent %s is not valid R4: %s", event["id"], "; ".join(map(str, issues)))
        if self._store is None:
            # Its own store, with reference checks off: an event names what was asked for, which
            # may not exist (a refused read) or no longer exist (a delete).
            self._store = SqlStore(self.database_url, migrate=False, check_references=False)
        self._store.load(events, batch_size=BATCH, analyze=False)


def flush_all() -> None:
    """Write everything queued in this process (tests, atexit, gunicorn's worker_exit)."""
    with _registry_lock:
        writers = list(_writers)
    for writer in writers:
        try:
            writer.flush()
        except Exception:
            log.exception("audit flush failed")


atexit.register(flush_all)
