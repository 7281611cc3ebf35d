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
import time
from typing import Any

from adapter.audit.events import audit_event
from adapter.audit.record import AccessRecord
from adapter.fhir.validation import validate
from adapter.store.sql_store import SqlStore

__all__ = ["AuditWriter", "flush_all"]

log = logging.getLogger("adapter.audit")
BATCH = 500  # events per transaction at most
# Seconds the thread gathers events before it writes them: one transaction per event cost 3x
# the event itself, and a request pays for the writer's CPU time (the GIL, the shared cores).
LINGER = 0.5
RETRIES = 20  # failed writes in a row after which the held events are given up (logged)
HELD = 100_000  # events held for a retry at most
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
        self._valid_shapes: set[Any] = set()
        self._retry: list[dict[str, Any]] = []
        self._failures = 0
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
        with _registry_lock:
            if self in _writers:
                _writers.remove(self)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items: list[AccessRecord | threading.Event] = [first]
            stop = False
            deadline = time.monotonic() + LINGER
            # Gather until the batch is full or has waited long enough; a flush writes at once.
            while len(items) < BATCH and not isinstance(items[-1], threading.Event):
                wait = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
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
            # Events that could not be written (the database away) go again with the next ones:
            # built once, so a retry of a write that did commit changes nothing (same ids).
            events, self._retry = self._retry + [audit_event(r, self.observer) for r in records], []
            if events:
                try:
                    self._load(events)
                    self._failures = 0
                except Exception:  # the thread must live on: log, keep them a while, go on
                    self._failures += 1
                    if self._failures <= RETRIES and len(events) <= HELD:
                        log.exception("could not write %d audit events; kept to try again", len(events))
                        self._retry = events
                    else:
                        log.exception("could not write %d audit events in %d tries: they are lost",
                                      len(events), self._failures)
                        self._failures = 0
        for item in items:
            if isinstance(item, threading.Event):
                item.set()

    def _load(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            # Validation is 60% of an event's cost, and events of one shape (the same elements,
            # codes and element kinds; other ids, times and texts) validate alike: once each.
            shape = _shape(event)
            if shape in self._valid_shapes:
                continue
            issues = validate(event)
            if issues:  # a bug of ours; the record of the access is still kept
                log.error("AuditEvent %s is not valid R4: %s", event["id"], "; ".join(map(str, issues)))
            elif len(self._valid_shapes) < 10_000:
                self._valid_shapes.add(shape)
        if self._store is None:
            # Its own store, with reference checks off: an event names what was asked for, which
            # may not exist (a refused read) or no longer exist (a delete).
            self._store = SqlStore(self.database_url, migrate=False, check_references=False)
        self._store.load(events, batch_size=BATCH, analyze=False)


# Elements whose values come from this server's fixed code lists: part of an event's shape.
_CODED = frozenset({"code", "system", "action", "outcome", "requestor", "type"})


def _shape(node: Any, key: str = "") -> Any:
    """The event with its free values (ids, instants, references, texts) reduced to their kind;
    an empty text stays apart, since FHIR refuses it."""
    if isinstance(node, dict):
        return tuple((k, _shape(v, k)) for k, v in node.items())
    if isinstance(node, list):
        return tuple(_shape(v) for v in node)
    if isinstance(node, str) and key not in _CODED:
        return "" if not node or node != node.strip() else "s"
    return node


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
