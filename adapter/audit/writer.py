"""The audit writer: the request path journals a small record (adapter/audit/journal.py) and
queues it; a thread per process turns what is queued into AuditEvents and writes them in
batches through the store's one write path.

An audit trail no request and no outage can blank:
- every record is on disk before its answer leaves; a segment is deleted only once its events
  are committed, so events wait on disk (bounded) while the database is away, and a worker
  killed mid-batch leaves a segment that another writer of the store writes later;
- an event the database refuses is written alone (its batch goes on without it), repaired if
  it still fails; events are sanitised first (a NUL, which PostgreSQL's JSON refuses).

The thread starts on the first record in a process, so a gunicorn worker starts its own after
the fork (a thread does not survive a fork). `flush_all` runs at exit and from gunicorn's
worker_exit hook.
"""
from __future__ import annotations

import atexit
import logging
import os
import pickle
import queue
import threading
import time
import uuid
from typing import Any, NamedTuple

from adapter.audit.events import audit_event, minimal_event
from adapter.audit.journal import Journal, Segment, journal_folder, read_frames
from adapter.audit.record import AccessRecord
from adapter.fhir.validation import validate
from adapter.private import beside_store
from adapter.store.outages import is_outage
from adapter.store.sql_store import SqlStore

__all__ = ["AuditWriter", "flush_all", "JOURNAL_MAX_BYTES"]

log = logging.getLogger("adapter.audit")
BATCH = 500  # events per transaction at most
# Seconds the thread gathers events before it writes them: one transaction per event cost 3x
# the event itself, and a request pays for the writer's CPU time (the GIL, the shared cores).
LINGER = 0.5
RETRY_EVERY = (0.5, 5.0)  # first and longest wait between two tries while the database is away
LOOK_FOR_ORPHANS_EVERY = 30.0  # seconds between two looks for segments of processes that are gone
JOURNAL_MAX_BYTES = 1 << 30  # of segments on disk per store; past it, records are in memory only
_IN_MEMORY = 100_000  # records held in memory at most when neither the disk nor the database takes them
_writers: list[AuditWriter] = []
_registry_lock = threading.Lock()
Entry = tuple[str, AccessRecord]  # (the event's id, fixed when recorded; the record)


class _Queued(NamedTuple):
    entry: Entry
    on_disk: bool  # journaled; else (a full disk) it lives in memory only until written


class AuditWriter:
    def __init__(self, database_url: str, observer: str, journal_dir: str | None = None,
                 journal_max_bytes: int = JOURNAL_MAX_BYTES) -> None:
        self.database_url = database_url
        self.observer = observer
        self.journal_root = journal_dir or beside_store(database_url, "audit-journal")
        self.journal_max_bytes = journal_max_bytes
        self._queue: queue.SimpleQueue[_Queued | threading.Event | None] = queue.SimpleQueue()
        self._append = threading.Lock()  # a record is journaled and queued in one order
        self._lock = threading.Lock()  # one writer of the store at a time: the thread or a flush
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._journal: Journal | None = None
        self._store: SqlStore | None = None
        self._valid_shapes: set[Any] = set()
        self._owed: list[Segment] = []  # segments whose events are not in the database yet
        self._unjournaled: list[Entry] = []  # records written while the database was away, not on disk
        self.lost = 0  # events given up (neither on disk nor in the database): logged
        self._away_since: float | None = None
        self._last_orphan_look = 0.0
        with _registry_lock:
            _writers.append(self)

    # -- the request path ---------------------------------------------------------------------

    def record(self, item: AccessRecord) -> None:
        if self._pid != os.getpid():
            self._start()
        entry = (str(uuid.uuid4()), item)
        frame = pickle.dumps(entry, pickle.HIGHEST_PROTOCOL)
        with self._append:
            journaled = self._journal is not None and self._journal.append(frame)
            self._queue.put(_Queued(entry, journaled))

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # In a forked child the parent's queue, thread, journal and connections are not ours.
            self._queue = queue.SimpleQueue()
            self._store = None
            self._owed, self._unjournaled = [], []
            try:
                self._journal = Journal(journal_folder(self.journal_root, self.database_url), self.journal_max_bytes)
            except OSError as error:
                log.error("audit journal unavailable (%s): events wait in memory only", error)
                self._journal = None
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._pid = os.getpid()
            self._thread.start()

    # -- flushing and closing -----------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> None:
        """Return once everything recorded before the call is in the database, or on disk for
        later when the database is away."""
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
        for segment in self._owed:  # left on disk, unlocked: the next writer of the store takes them
            segment.close()
        self._owed = []
        with _registry_lock:
            if self in _writers:
                _writers.remove(self)

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        self._write([])  # segments of processes that are gone, before anything new
        while True:
            wait = self._retry_wait() if self._owed or self._unjournaled else LOOK_FOR_ORPHANS_EVERY
            try:
                first = self._queue.get(timeout=wait)
            except queue.Empty:
                self._write([])  # try the owed segments again, look for orphans
                continue
            if first is None:
                return
            items: list[Any] = [first]
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
            if self._write(items) or stop:
                return

    def _retry_wait(self) -> float:
        away = time.monotonic() - (self._away_since or time.monotonic())
        return min(RETRY_EVERY[1], RETRY_EVERY[0] * (1 + away / 2))

    def _drain(self) -> None:
        self._write([])  # takes everything queued

    def _write(self, items: list[Any]) -> bool:
        """Write `items` and everything else queued so far; True when a stop was among them."""
        with self._lock:
            with self._append:
                # The segment closed here holds exactly the records queued until now: take them all.
                segment = self._journal.rotate() if self._journal is not None else None
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            queued = [i for i in items if isinstance(i, _Queued)]
            self._unjournaled.extend(q.entry for q in queued if not q.on_disk)
            if segment is not None:
                segment.entries = [q.entry for q in queued if q.on_disk]
                self._owed.append(segment)
            self._look_for_orphans()
            if self._pay_owed():
                self._away_since = None
            elif self._away_since is None:
                self._away_since = time.monotonic()
        for item in items:
            if isinstance(item, threading.Event):
                item.set()
        return any(item is None for item in items)

    def _look_for_orphans(self) -> None:
        if self._journal is None or time.monotonic() - self._last_orphan_look < LOOK_FOR_ORPHANS_EVERY:
            return
        self._last_orphan_look = time.monotonic()
        for orphan in self._journal.orphans():
            log.info("audit journal: writing the events of %s (a process that is gone)", orphan.path.name)
            self._owed.insert(0, orphan)

    def _pay_owed(self) -> bool:
        """Write what is owed, oldest first; True when nothing is owed any more."""
        for segment in list(self._owed):
            entries = segment.entries if segment.entries is not None else [
                pickle.loads(frame) for frame in read_frames(segment)]
            if not self._store_entries(entries):
                for waiting in self._owed:
                    waiting.entries = None  # on disk: read again when the database is back
                return False
            self._owed.remove(segment)
            if self._journal is not None:
                self._journal.release(segment)
        if self._unjournaled:
            if not self._store_entries(self._unjournaled):
                if len(self._unjournaled) > _IN_MEMORY:  # memory bounds what is not on disk
                    self._give_up(self._unjournaled[:-_IN_MEMORY], "neither the journal nor the database took them")
                    self._unjournaled = self._unjournaled[-_IN_MEMORY:]
                return False
            self._unjournaled = []
        return True

    def _store_entries(self, entries: list[Entry]) -> bool:
        """Their events in the database (True), or the database is away (False)."""
        events = [audit_event(record, self.observer, event_id) for event_id, record in entries]
        for start in range(0, len(events), BATCH):
            chunk = events[start:start + BATCH]
            try:
                self._load(chunk)
            except Exception as error:
                if is_outage(error):
                    self._say_away(error)
                    return False
                log.warning("a batch of %d audit events was refused (%s): each is written alone",
                            len(chunk), error)
                for event in chunk:
                    if not self._store_alone(event):
                        return False
        return True

    def _store_alone(self, event: dict[str, Any]) -> bool:
        for attempt in (event, minimal_event(event)):
            try:
                self._load([attempt])
                if attempt is not event:
                    log.error("AuditEvent %s was refused by the database; stored without its details", event["id"])
                return True
            except Exception as error:
                if is_outage(error):
                    self._say_away(error)
                    return False
                refusal = error
        self._give_up([event], f"refused by the database: {refusal}")
        return True

    def _say_away(self, error: BaseException) -> None:
        if self._away_since is None:
            log.warning("the database is away (%s): audit events wait on disk until it is back",
                        str(error).splitlines()[0] if str(error) else type(error).__name__)

    def _give_up(self, lost: list[Any], why: str) -> None:
        self.lost += len(lost)
        log.error("%d audit events lost (%s): %s", len(lost), why,
                  [e.get("id") if isinstance(e, dict) else e[0] for e in lost][:20])

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
