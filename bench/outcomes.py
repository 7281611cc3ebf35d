"""Outcome reports at scale: `Measure/[id]/$evaluate-measure` over a store of N children.

Usage: python -m bench.outcomes [--children 10000] [--db URL] [--rounds 3] [--measure adl]

Without --db a store is built first: site A's export of N children (bench/site_ingest.py's
generator), ingested with 2 workers (about 170 resources a child; 10,000 children take 15-20
minutes and 8 GB of SQLite). With --db the store is used as it is (the protocol is loaded again
so its Measures are current).

Timed over real HTTP (the gateway on a loopback port, one request at a time), per round: the
population report of one measure with nothing cached (`cold`: a write to the store first, which
is what invalidates the cache) and again (`warm`), and the subject-list report. In the same run,
the baseline: a hand-written SQL query over the same store (SQLite's json_extract, one query
joining each Observation of the code to its Encounter's visit key) and the same arithmetic in
Python: the floor for reading those values. Printed: seconds and the ratio to the baseline.
Target (issue 14): a population report over 10,000 children in under 2 s on SQLite.
"""
from __future__ import annotations

import argparse
import pathlib
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from typing import Any

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from adapter.gateway.app import create_app
from adapter.protocol.spec import SPECS
from adapter.study.load import load_protocol
from bench.site_ingest import end_to_end, write_export

PERIOD = {"periodStart": "2000", "periodEnd": "2100"}


def baseline(path: str, system: str, code: str, baseline_visit: str, visits: list[str]) -> float:
    """Seconds for the floor: one SQL query for (child, visit, value), the mean changes in Python."""
    started = time.perf_counter()
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT json_extract(CAST(o.data AS TEXT), '$.subject.reference'), "
        "       json_extract(CAST(e.data AS TEXT), '$.type[0].coding[0].code'), "
        "       json_extract(CAST(o.data AS TEXT), '$.valueQuantity.value') "
        "FROM idx_token t JOIN resources o ON o.res_type = 'Observation' AND o.res_id = t.res_id "
        "JOIN resources e ON e.res_type = 'Encounter' "
        "     AND e.res_id = substr(json_extract(CAST(o.data AS TEXT), '$.encounter.reference'), 11) "
        "WHERE t.res_type = 'Observation' AND t.param = 'code' AND t.system = ? AND t.code = ? "
        "  AND o.deleted = 0", (system, code)).fetchall()
    db.close()
    values: dict[tuple[str, str], float] = {}
    for patient, visit, value in rows:
        if value is not None:
            values.setdefault((patient, visit), float(value))
    means = defaultdict(list)
    for (patient, visit), value in values.items():
        if visit in visits and (patient, baseline_visit) in values:
            means[visit].append(value - values[(patient, baseline_visit)])
    {visit: statistics.fmean(changes) for visit, changes in means.items() if changes}
    return time.perf_counter() - started


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def _timed(session: requests.Session, url: str, params: dict[str, str]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = session.get(url, params=params, timeout=600)
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return seconds, response.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--db", help="an SQLite store URL to use as it is (default: build one of --children)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", default="adl", help="the outcome key (default: adl)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{tmp}/bench.db"
        load_protocol(db, SPECS / "ucmsc-cp-v1.yaml")
        if not args.db:
            export = pathlib.Path(tmp) / "export.csv"
            write_export(args.children, export)
            seconds, _, summary = end_to_end(export, db, 2)
            print(f"store: {summary} ({seconds:.0f} s)")
        app = create_app({"DATABASE_URL": db, "EXPORT_DIR": f"{tmp}/exports", "REQUEST_TIMEOUT": 0,
                          "STATEMENT_TIMEOUT": 0})
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}/fhir"
        url = f"{base}/Measure/ucmsc-cp-{args.measure}/$evaluate-measure"
        spec_outcome = _outcome(args.measure)
        path = db.removeprefix("sqlite:///")
        print("| round | cold population (s) | warm population (s) | subject-list (s) | baseline SQL (s) | cold / baseline |")
        print("|---|---|---|---|---|---|")
        with requests.Session() as session:
            for n in range(1, args.rounds + 1):
                session.post(f"{base}/CodeSystem", json={"resourceType": "CodeSystem", "status": "draft",
                                                         "content": "not-present"})  # a write: nothing cached holds
                cold, report = _timed(session, url, PERIOD)
                warm, _ = _timed(session, url, PERIOD)
                listed, _ = _timed(session, url, {**PERIOD, "reportType": "subject-list"})
                floor = baseline(path, *spec_outcome)
                print(f"| {n} | {cold:.2f} | {warm:.3f} | {listed:.2f} | {floor:.2f} | {cold / floor:.2f}x |")
        children = next(p["count"] for p in report["group"][0]["population"]
                        if p["code"]["coding"][0]["code"] == "initial-population")
        print(f"children in the report: {children:,}; target: population report < 2 s")
        server.shutdown()


def _outcome(key: str) -> tuple[str, str, str, list[str]]:
    from adapter.outcomes.measures import outcomes_of
    from adapter.protocol.spec import load_spec
    outcome = outcomes_of(load_spec(SPECS / "ucmsc-cp-v1.yaml"))[key]
    return outcome.system, outcome.code, outcome.baseline, list(outcome.follow_up)


if __name__ == "__main__":
    sys.exit(main())
