"""What the audit trail costs a read: read-by-id with the audit on beside the audit off, in one run.

Usage: python -m bench.audit [--db URL ...] [--duration 12] [--rounds 3] [--workers 2]

Two gateways on the same store (default: a fresh SQLite file, and PostgreSQL when it answers), one
with FHIR_ADAPTER_AUDIT=on and one off, loaded in interleaved rounds (wrk when installed, else
the Python generator). Printed: req/s, p50 and p99 of each, the on/off ratio, and how many
AuditEvents the audited server had written once stopped (each request should have one).
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

from sqlalchemy import func, select

from bench.loadgen import Result
from bench.read import READ_PATH, _free_port, _gunicorn, _prepare_store, paired_load_arguments
from bench.stores import temporary_stores


def _audit_events(db_url: str) -> int:
    from adapter.store.schema import resources
    from adapter.store.sql_store import SqlStore
    store = SqlStore(db_url, migrate=False)
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(resources)
                                    .where(resources.c.res_type == "AuditEvent")).scalar_one())
    finally:
        store.close()


def main() -> None:
    args, load = paired_load_arguments(__doc__)
    rows = []
    with temporary_stores(args.db) as stores, tempfile.TemporaryDirectory() as tmp:
        for label, url in stores:
            _prepare_store(url, args.observations)
            runs: dict[str, list[Result]] = {"audit off": [], "audit on": []}
            with contextlib.ExitStack() as stack:
                servers = {mode: stack.enter_context(_gunicorn(
                    "adapter.gateway.app:create_app()", _free_port(),
                    {"FHIR_ADAPTER_DB": url, "FHIR_ADAPTER_AUDIT": "on" if mode == "audit on" else "off"},
                    pathlib.Path(tmp), args.workers)) for mode in runs}
                before = _audit_events(url)
                for _ in range(args.rounds):
                    for mode, base in servers.items():
                        runs[mode].append(load(base + READ_PATH, args.duration / args.rounds, args.connections))
            # stopped (SIGTERM): the audited workers have flushed their queues
            written = _audit_events(url) - before
            median = {mode: sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for mode, rs in runs.items()}
            served = sum(r.rps * args.duration / args.rounds for r in runs["audit on"])
            rows.append((label, median, written, served))
    print(f"load generator: {load.__name__.replace('_load', '')}, {args.connections} connections, "
          f"{args.workers} gunicorn sync workers, median of {args.rounds} interleaved rounds of "
          f"{args.duration / args.rounds:.0f} s; {os.cpu_count()} cores; read-by-id {READ_PATH}")
    print(f"{'store':<12}{'audit':<11}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for label, median, written, served in rows:
        for mode, r in median.items():
            print(f"{label:<12}{mode:<11}{r.rps:>9.0f}{r.p50:>9.2f}{r.p99:>9.2f}{r.errors:>8}")
        on, off = median["audit on"], median["audit off"]
        print(f"{label}: audit on / off = {on.rps / off.rps:.2f}x req/s, p50 {on.p50 / off.p50:.2f}x; "
              f"{written} AuditEvents written for about {served:.0f} audited requests")


if __name__ == "__main__":
    main()
