"""A bulk-load batch that PostgreSQL ends to break a lock cycle is written again, not lost.

Found by the full suite: two ingest workers writing a shared resource while checking each
other's references deadlocked, and the ingest failed with a 409. Here the cycle is made on
purpose: another transaction holds the patient an Observation refers to, then asks for the
Observation; this store's reference check waits on the patient. PostgreSQL ends this store's
batch (the other transaction waits longer before checking), and the batch is written again.
"""
from __future__ import annotations

import threading
import time

from adapter.store.engines import lock_resources
from adapter.store.sql_store import SqlStore
from conftest import postgres_schema


def test_a_batch_ended_by_a_deadlock_is_written_again() -> None:
    with postgres_schema() as db_url:  # SQLite has one writer at a time: no lock cycles
        _cycle(db_url)


def _cycle(db_url: str) -> None:
    store = SqlStore(db_url, check_references=True)
    try:
        store.load([{"resourceType": "Patient", "id": "q"}])
        other = store.engine.connect()
        tx = other.begin()
        other.exec_driver_sql("SET LOCAL deadlock_timeout = '30s'")  # this store's check runs first
        lock_resources(other, [("Patient", "q")])
        closed = threading.Event()

        def close_the_cycle() -> None:
            time.sleep(0.3)  # the load holds Observation/p and waits for Patient/q by now
            lock_resources(other, [("Observation", "p")])
            tx.commit()
            other.close()
            closed.set()

        thread = threading.Thread(target=close_the_cycle)
        thread.start()
        written = store.load([{"resourceType": "Observation", "id": "p", "status": "final",
                               "code": {"text": "x"}, "subject": {"reference": "Patient/q"}}])
        thread.join(timeout=60)
        assert closed.is_set()
        assert written == 1
        assert store.read("Observation", "p").version_id == 1
    finally:
        store.close()
