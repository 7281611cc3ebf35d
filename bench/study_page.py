"""The study page on the demo store: how long until its outcome section is there (issue 29: within
2 s at the demo's size on a quiet machine), against bare Flask serving the same bytes.

Usage: python -m bench.study_page [--rounds 5] [--db URL] [--no-browser]

Without --db the demo is loaded into a temporary SQLite store (`fhir-adapter demo --no-serve`,
~10 s). The gateway and a bare Flask app returning the page's very bytes run in this process on
loopback ports, one request at a time (werkzeug's threaded server for both). Timed per round:
the page with nothing cached (`cold`: a write to the store first, which is what invalidates the
outcomes' cache), again (`warm`), and bare Flask's answer of the same bytes; the ratio is the
gateway's time over bare Flask's; and the adherence matrix that follows the page (pages.js fetches
it), cold and warm. With Debian's Chromium (/usr/bin/chromium), also the time from
navigation until the outcome section's first table is shown and its chart drawn (after the
1.1 MB basic Plotly bundle has run; cached, as after a first visit), cold and warm: what a clinician
waits for. Printed with the load average, as a busy machine's figures mean little.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import requests
from flask import Flask, Response
from werkzeug.serving import WSGIRequestHandler, make_server

from adapter.gateway.app import create_app

PAGE = "/ui/?as-of=2026-06-01"
MATRIX = "/ui/?as-of=2026-06-01&section=adherence&page=1"  # the adherence matrix, fetched after the page
CHROMIUM = "/usr/bin/chromium"
TARGET = 2.0  # seconds until the outcome section is there


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def _serve(app: Any) -> tuple[Any, str]:
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def _bare(body: bytes) -> Flask:
    app = Flask("bare")

    @app.get("/ui/")
    def page() -> Response:
        return Response(body, 200, content_type="text/html; charset=utf-8")
    return app


def _write(session: requests.Session, base: str) -> None:
    """A write to the store: nothing cached for the old store generation holds."""
    session.post(f"{base}/fhir/CodeSystem", json={"resourceType": "CodeSystem", "status": "draft",
                                                  "content": "not-present"}, timeout=60).raise_for_status()


def _timed(session: requests.Session, url: str, fragment: bool = False) -> tuple[float, bytes]:
    started = time.perf_counter()
    answer = session.get(url, timeout=120, headers={"X-Fragment": "1"} if fragment else {})
    seconds = time.perf_counter() - started
    answer.raise_for_status()
    return seconds, answer.content


def _browser_rounds(base: str, rounds: int, session: requests.Session) -> list[tuple[float, float, float]]:
    from playwright.sync_api import sync_playwright
    found = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                              "--disable-gpu"])
        context = browser.new_context()  # one browser profile: plotly.min.js is cached for a year
        first = context.new_page()
        first.goto(base + PAGE, wait_until="networkidle")  # as a clinician's browser has it after one visit
        first.close()
        for _ in range(rounds):
            pair = []
            for cold in (True, False):
                if cold:
                    _write(session, base)
                page = context.new_page()
                started = time.perf_counter()
                page.goto(base + PAGE, wait_until="commit")
                if cold:  # the section's table, shown as the HTML arrives (before plotly.min.js has run)
                    page.wait_for_selector("#table-adl", state="visible", timeout=120_000)
                    pair.append(time.perf_counter() - started)
                page.wait_for_selector("#change-adl .scatterlayer .trace", timeout=120_000)
                pair.append(time.perf_counter() - started)
                page.close()
            found.append((pair[0], pair[1], pair[2]))
        browser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", help="a store URL with the demo loaded (default: load it into a temporary one)")
    parser.add_argument("--no-browser", action="store_true", help="time the HTTP answers only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{tmp}/demo.db"
        if not args.db:
            cli = str(pathlib.Path(sys.executable).parent / "fhir-adapter")
            subprocess.run([cli, "demo", "--no-serve", "--db", db], check=True, cwd=tmp, stdout=subprocess.DEVNULL)
        gateway, base = _serve(create_app({"DATABASE_URL": db, "EXPORT_DIR": f"{tmp}/exports", "AUDIT": False}))
        with requests.Session() as session:
            _, body = _timed(session, base + PAGE)
            bare, bare_base = _serve(_bare(body))
            print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}; {len(body):,} bytes a page")
            print("| round | cold page (s) | warm page (s) | bare Flask (s) | warm / bare | matrix cold (s) | warm (s) |")
            print("|---|---|---|---|---|---|---|")
            colds, warms = [], []
            for n in range(1, args.rounds + 1):
                _write(session, base)
                cold, _ = _timed(session, base + PAGE)
                warm, _ = _timed(session, base + PAGE)
                floor, same = _timed(session, bare_base + PAGE)
                assert same == body
                matrix_cold, _ = _timed(session, base + MATRIX, fragment=True)
                matrix_warm, _ = _timed(session, base + MATRIX, fragment=True)
                colds.append(cold)
                warms.append(warm)
                print(f"| {n} | {cold:.3f} | {warm:.3f} | {floor:.4f} | {warm / floor:.1f}x | {matrix_cold:.2f} "
                      f"| {matrix_warm:.3f} |")
            print(f"median: cold {statistics.median(colds):.3f} s, warm {statistics.median(warms):.3f} s")
            if not args.no_browser and os.path.exists(CHROMIUM):
                drawn = _browser_rounds(base, args.rounds, session)
                print("| round | outcome table shown, cold (s) | outcome chart drawn, cold (s) | chart, warm (s) |")
                print("|---|---|---|---|")
                for n, (table, cold, warm) in enumerate(drawn, 1):
                    print(f"| {n} | {table:.2f} | {cold:.2f} | {warm:.2f} |")
                worst = max(c for _, c, _ in drawn)
                print(f"slowest cold: {worst:.2f} s; target: < {TARGET:.0f} s on a quiet machine "
                      f"({'met' if worst < TARGET else 'NOT met'})")
            print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        bare.shutdown()
        gateway.shutdown()


if __name__ == "__main__":
    main()
