"""The pages under /ui/ in a real browser (Debian's Chromium through Playwright) over real HTTP,
on the four sites' store the outcomes tests use: the numbers shown are those `population()`
computes from the same store, the plots draw a point per visit, the workbench shows a fixture's
expected rejections and stores nothing, and with auth on a site's token shows only its site.

One browser and one server (per auth setting) for the module; few page loads (~40 s budget)."""
from __future__ import annotations

import collections
import csv
import json
import pathlib
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from adapter.pages.study import MATRIX_ROWS
import requests
from werkzeug.serving import make_server

from adapter.fhir.sites import sites_of
from adapter.gateway.app import create_app
from adapter.outcomes.measures import child_changes, outcomes_of, population
from adapter.protocol.adherence import adherence
from adapter.protocol.apply import search_all
from adapter.protocol.spec import SPECS
from adapter.protocol.spec import load_spec
from adapter.store.clients import ClientRecord
from auth_helpers import RSA_KEY, assertion, public_jwks, token_form
from conftest import ROOT, table_counts

AS_OF = "2026-06-01"
STUDY = "ucmsc-cp"


class Server:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.root = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def _app(url: str, folder: pathlib.Path, **config: Any) -> Any:
    return create_app({"DATABASE_URL": url, "EXPORT_DIR": str(folder / "exports"), "AUDIT": False,
                       "MAX_CONTENT_LENGTH": 64 * 1024, **config})


@pytest.fixture(scope="module")
def open_server(four_sites: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(_app(four_sites[1], tmp_path_factory.mktemp("pages")))
    yield server
    server.close()


@pytest.fixture(scope="module")
def auth_server(four_sites: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("pages-auth")
    server = Server(_app(four_sites[1], folder, AUTH=True, AUTH_KEY_FILE=str(folder / "auth-key.json"),
                         AUTH_CLIENT_CACHE_SECONDS=0))
    jwks = json.dumps(public_jwks(RSA_KEY))
    store = server.app.extensions["fhir_store"]
    for name, scope in (("pages-site-a", "system/*.rs"), ("pages-subjects-only", "system/ResearchSubject.rs"),
                        ("pages-site-a-ingest", "system/*.cruds")):  # all of site A
        if store.get_client(name) is None:  # the session's store: registered once
            store.add_client(ClientRecord(name, scope, jwks, site="site-a"))
    yield server
    server.close()


def visit(context: Any, url: str) -> tuple[Any, list[str]]:
    """A page of a browser context, loaded, and the console and page errors it had."""
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="networkidle")
    page.wait_for_function("() => !document.querySelector('[data-fragment]')", timeout=60_000)  # sections that follow
    return page, errors


def _subjects(store: Any) -> list[dict[str, Any]]:
    return list(search_all(store, "ResearchSubject", [("study", f"ResearchStudy/{STUDY}")]))


@pytest.mark.slow
def test_study_and_child_pages_show_the_stores_numbers_and_draw_their_plots(
        browser: Any, open_server: Server, four_sites: tuple[Any, str]) -> None:
    store = four_sites[0]
    context = browser.new_context()
    page, errors = visit(context, f"{open_server.root}/ui/?as-of={AS_OF}")
    assert page.title().startswith("Study")
    # Enrolment: each (site, arm) cell is the ResearchSubjects' count.
    subjects = _subjects(store)
    expected = collections.Counter((next(iter(sites_of(s))), s["assignedArm"]) for s in subjects)
    shown = {(c.get_attribute("data-site"), c.get_attribute("data-arm")): int(c.inner_text())
             for c in page.locator("td.enrolled").all()}
    assert {k: v for k, v in shown.items() if v} == dict(expected)
    assert int(page.locator("#enrolled-total").inner_text()) == len(subjects)
    sites, arms = {site for site, _ in expected}, {arm for _, arm in expected}
    assert page.locator("#enrolment-plot .barlayer .point").count() == len(sites) * len(arms)  # a bar each
    # Change from baseline: the table is population() of the same store, and each arm's trace
    # draws one point, one error bar and one visible "n=" label per visit with a mean.
    outcomes = outcomes_of(load_spec(SPECS / "ucmsc-cp-v1.yaml"))
    for key in ("adl", "gmfm-88-total", "gmfm-66"):
        rows = population(outcomes[key], child_changes(store, outcomes[key], STUDY), "arm")
        table = {(r.get_attribute("data-visit"), r.get_attribute("data-group")):
                 (int(r.get_attribute("data-n")), r.get_attribute("data-mean"))
                 for r in page.locator(f"tr.change[data-outcome='{key}']").all()}
        assert set(table) == {(r.visit, r.group) for r in rows}
        for row in rows:
            n, mean = table[(row.visit, row.group)]
            assert n == row.summary.n
            assert (mean == "" if row.summary.mean is None else float(mean) == pytest.approx(row.summary.mean))
        # ... and what the same server's $evaluate-measure answers, stratum by stratum.
        report = requests.get(f"{open_server.root}/fhir/Measure/ucmsc-cp-{key}/$evaluate-measure", timeout=60,
                              params={"periodStart": "2000", "periodEnd": "2100"}).json()
        for group in report["group"]:
            by_arm = next(s for s in group["stratifier"] if s["code"][0]["coding"][0]["code"] == "arm")
            for stratum in by_arm["stratum"]:
                n, mean = table[(group["code"]["coding"][0]["code"], stratum["value"]["text"])]
                counted = next(p["count"] for p in stratum["population"]
                               if p["code"]["coding"][0]["code"] == "measure-population")
                assert n == counted and (mean == "" if "measureScore" not in stratum
                                         else float(mean) == pytest.approx(stratum["measureScore"]["value"], abs=1e-3))
        traces = page.locator(f"#change-{key} .scatterlayer .trace")
        groups = sorted({r.group for r in rows if r.summary.mean is not None})
        assert traces.count() == len(groups)
        for i, group in enumerate(groups):
            drawn = [r for r in rows if r.group == group and r.summary.mean is not None]
            assert traces.nth(i).locator("path.point").count() == len(drawn), (key, group)
            assert traces.nth(i).locator("path.yerror").count() == len(drawn), (key, group)
            labels = traces.nth(i).locator(".textpoint text").all_text_contents()  # SVG: no innerText
            assert labels == [f"n={r.summary.n}" for r in drawn], (key, group)
        if key == "adl":
            arm_2 = [r for r in rows if r.group == "arm-2"]
            assert arm_2 and all(r.summary.n == 4 for r in arm_2)  # as tests/test_outcomes.py
    # Adherence: one row per child, a page of them, each linking to the child's page.
    assert page.locator("tr.child").count() == min(len(subjects), MATRIX_ROWS)
    assert page.locator("tr.child td.cell.state-done").count() > 0
    # Adverse events: the study's children's, as stored.
    children = {s["individual"]["reference"] for s in subjects}
    events = [e for e in search_all(store, "AdverseEvent", []) if e["subject"]["reference"] in children]
    assert page.locator("table.ae[data-by='grade'] tfoot td").first.inner_text() == str(len(events))
    assert page.locator("table.ae-summary tr[data-group='all'] td").nth(1).inner_text() == str(len(subjects))
    assert errors == []

    # The child page, reached by its link.
    with page.expect_navigation(wait_until="networkidle"):
        page.click("a[href='/ui/child/site-a-A0004']")
    assert page.locator("h1").inner_text() == "Child site-a-A0004"
    subject = next(s for s in subjects if s["individual"]["reference"] == "Patient/site-a-A0004")
    planned = {f.visit for f in adherence(store, subject["id"], date.today()) if f.planned is not None}
    assert page.locator("#timeline .scatterlayer .trace").first.locator("path.point").count() == len(planned)
    assert page.locator("[id^='score-'] .scatterlayer path.point").count() > 0
    ae = [e for e in events if e["subject"]["reference"] == "Patient/site-a-A0004"]
    assert ae and page.locator("tr.adverse-event").count() == len(ae)
    # Every value names its source row and mapping (the Provenance that targets it).
    values = page.locator("tr.value")
    assert values.count() > 20
    assert page.locator("tr.value .source.none").count() == 0
    first = values.first.text_content() or ""  # folded (<details>): no innerText until opened
    assert "export.csv line" in first and "site-a-redcap" in first
    assert errors == []
    # The vendored Plotly bundle is served by us and cached; pages are not.
    src = page.locator("script[src*='plotly']").first.get_attribute("src")
    assert src.startswith("/ui/assets/plotly-")
    script = requests.get(open_server.root + src, timeout=30)  # requests asks for gzip
    assert "immutable" in script.headers["Cache-Control"] and script.headers["Content-Encoding"] == "gzip"
    assert script.content.startswith(b"/**") and b"plotly.js" in script.content[:400] and len(script.content) > 1_000_000
    assert requests.head(f"{open_server.root}/ui/", timeout=30).headers["Cache-Control"] == "no-store"
    # An unknown child: a 404 page, in HTML.
    answer = page.goto(f"{open_server.root}/ui/child/no-such-child")
    assert answer.status == 404 and "text/html" in answer.headers["content-type"]
    assert "not found" in page.locator("#error-message").inner_text().lower() or \
        "no-such-child" in page.locator("#error-message").inner_text()
    context.close()


def test_the_workbench_shows_a_fixtures_rejections_and_stores_nothing(
        browser: Any, open_server: Server, four_sites: tuple[Any, str]) -> None:
    store = four_sites[0]
    before = table_counts(store)
    context = browser.new_context()
    page, errors = visit(context, f"{open_server.root}/ui/workbench?mapping=site-a&fixture=site-a/export.csv")
    with (ROOT / "fixtures" / "sites" / "site-a" / "expected-rejections.csv").open(encoding="utf-8") as handle:
        expected = list(csv.DictReader(handle))
    shown = [(r.get_attribute("data-row"), r.get_attribute("data-column"), r.get_attribute("data-value"))
             for r in page.locator("tr.rejection").all()]
    assert shown == [(e["row"], e["column"], e["value"]) for e in expected]
    outcomes = collections.Counter(e["outcome"] for e in expected)
    assert int(page.locator("#rows-rejected").inner_text()) == outcomes["rejected"]
    assert int(page.locator("#rows-partly").inner_text()) == outcomes["partly"]
    assert page.locator("#grid tbody tr").count() == 20  # site A's children
    assert errors == []
    # An upload that is no CSV: said on the page (each row refused as not UTF-8), no 500.
    page.select_option("form[enctype] select[name=mapping]", "site-a")
    page.set_input_files("input[name=file]", files=[{"name": "export.csv", "mimeType": "text/csv",
                                                      "buffer": bytes(range(256)) * 4}])
    with page.expect_navigation():
        page.click("form[enctype] button")
    assert "not utf-8" in page.locator("#rejections").inner_text()
    # Past the body limit: an HTML page saying so.
    too_big = requests.post(f"{open_server.root}/ui/workbench", data={"mapping": "site-a"},
                            files={"file": ("export.csv", b"x" * (70 * 1024))}, timeout=30)
    assert too_big.status_code == 413 and "too large" in too_big.text
    # A fixture is chosen by name from a fixed list: no path from the form is read.
    answer = page.goto(f"{open_server.root}/ui/workbench?mapping=site-a&fixture=../../pyproject.toml")
    assert answer.status == 400
    assert table_counts(store) == before
    context.close()


def _token(root: str, client: str, scope: str) -> str:
    answer = requests.post(f"{root}/auth/token", timeout=30, data=token_form(
        assertion(RSA_KEY, client, f"{root}/auth/token"), scope))
    return str(answer.json()["access_token"])


@pytest.mark.slow
def test_with_auth_pages_need_sign_in_and_show_only_the_tokens_site(
        browser: Any, auth_server: Server, four_sites: tuple[Any, str]) -> None:
    root = auth_server.root
    context = browser.new_context()
    page, _ = visit(context, f"{root}/ui/?as-of={AS_OF}")
    assert page.url.startswith(f"{root}/ui/sign-in")  # redirected, not a FHIR 401
    token = _token(root, "pages-site-a", "system/*.rs")
    # A form from another site is refused, whatever it carries.
    forged = requests.post(f"{root}/ui/sign-in", data={"token": token}, headers={"Origin": "http://evil.example"},
                           allow_redirects=False, timeout=30)
    assert forged.status_code == 403 and "Set-Cookie" not in forged.headers
    page.fill("#token", token)
    with page.expect_navigation(wait_until="networkidle"):
        page.click("form button[type=submit] >> text=Sign in")
    assert page.url.startswith(f"{root}/ui/")
    cookie = next(c for c in context.cookies() if c["name"] == "fhir_adapter_ui_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    page.wait_for_function("() => !document.querySelector('[data-fragment]')")  # the matrix follows the page
    patients = page.locator("tr.child").evaluate_all("rows => rows.map(r => r.dataset.patient)")
    site_a = [s for s in _subjects(four_sites[0]) if "site-a" in sites_of(s)]
    assert sorted(patients) == sorted(s["individual"]["reference"].split("/")[1] for s in site_a)
    assert int(page.locator("#enrolled-total").inner_text()) == len(site_a)
    # Another site's child, and the workbench (ingest needs create), are refused as pages.
    assert page.goto(f"{root}/ui/child/site-b-B0002").status == 404  # as a child never enrolled
    assert page.goto(f"{root}/ui/workbench").status == 403
    # The cookie is for the pages only: the API wants the bearer token.
    api = requests.get(f"{root}/fhir/Patient?_count=1", cookies={"fhir_adapter_ui_token": token}, timeout=30)
    assert api.status_code == 401
    context.close()
    # A token that may read ResearchSubjects only: enrolment shown, the other sections say why not.
    subjects_only = {"fhir_adapter_ui_token": _token(root, "pages-subjects-only", "system/ResearchSubject.rs")}
    narrow = requests.get(f"{root}/ui/", params={"whole": "1"}, cookies=subjects_only, timeout=30)
    assert narrow.status_code == 200 and 'id="enrolled-total">20<' in narrow.text
    assert narrow.text.count("not shown with your access") == 3
    # The same sections as fragments (what the page fetches): the same refusal, said in each.
    for fragment in ("outcomes", "adverse-events"):
        part = requests.get(f"{root}/ui/study/{fragment}", cookies=subjects_only, headers={"X-Fragment": "1"},
                            timeout=30)
        assert part.status_code == 200 and part.text.count("not shown with your access") == 1
        assert "<html" not in part.text
    # A site's user who may ingest may try its own site's mapping in the workbench, not another's.
    ingest = {"fhir_adapter_ui_token": _token(root, "pages-site-a-ingest", "system/*.cruds")}
    own = requests.get(f"{root}/ui/workbench", params={"mapping": "site-a", "fixture": "site-a/export.csv"},
                       cookies=ingest, timeout=60)
    assert own.status_code == 200 and 'id="rows-read">188<' in own.text
    other = requests.get(f"{root}/ui/workbench", params={"mapping": "site-b", "fixture": "site-b/export.ndjson"},
                         cookies=ingest, timeout=60)
    assert other.status_code == 403 and "another site" in other.text
    theirs = requests.get(f"{root}/ui/workbench", params={"mapping": "site-a", "fixture": "site-b/export.ndjson"},
                          cookies=ingest, timeout=60)  # its own mapping over another site's file
    assert theirs.status_code == 403 and "another site&#39;s file" in theirs.text
