"""The pages answer every error as an HTML page, never a FHIR OperationOutcome or a traceback,
and refuse a form posted from another site (without a browser: Flask's test client)."""
from __future__ import annotations

import io

import pytest

from adapter.gateway.app import create_app
from conftest import ROOT


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One SQLite store for the module: what is tested here is the pages', not the store's."""
    folder = tmp_path_factory.mktemp("pages-errors")
    app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'adapter.db'}", "EXPORT_DIR": str(folder / "exports"),
                      "REFERENTIAL_INTEGRITY": False})
    yield app.test_client()
    app.extensions["fhir_store"].close()


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/ui/child/no-such-child", 404, "no-such-child"),
    ("/ui/no/such/page", 404, "there is no page /ui/no/such/page"),
    ("/ui/?as-of=yesterday", 400, "as-of"),
    ("/ui/workbench?mapping=site-a&fixture=/etc/passwd", 400, "no fixture named"),
    ("/ui/study?page=%C2%B2", 200, "Study"),  # a digit to str.isdigit, not to int()
    ("/ui/study?page=" + "9" * 5000, 200, "Study"),
])
def test_errors_are_html_pages(client, path, status, says):
    answer = client.get(path)
    assert answer.status_code == status and answer.mimetype == "text/html"
    assert says in answer.get_data(as_text=True)


def test_an_unexpected_error_is_a_generic_page_and_goes_to_the_log(client, monkeypatch, caplog):
    def broken(*_args):
        raise RuntimeError("secret detail")
    monkeypatch.setattr("adapter.pages.study_views.child_page", broken)
    answer = client.get("/ui/child/p1")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 500 and answer.mimetype == "text/html"
    assert "secret detail" not in text and "Traceback" not in text
    assert "secret detail" in caplog.text


def test_a_form_from_another_site_is_refused(client):
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
        answer = client.post("/ui/workbench", data={"mapping": "site-a", "fixture": "site-a/export.csv"},
                             headers=headers)
        assert answer.status_code == 403 and "another site" in answer.get_data(as_text=True)
    same = client.post("/ui/workbench", data={"mapping": "site-a", "fixture": "site-a/export.csv"},
                       headers={"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200 and 'id="rows-read">188<' in same.get_data(as_text=True)


def test_a_rejected_identifier_is_withheld_from_the_page(client):
    """A bad birth date or MRN cell is a rejection like any other, but its value stays in the file."""
    rows = (ROOT / "fixtures" / "sites" / "site-a" / "export.csv").read_text(encoding="utf-8").splitlines()
    header = rows[0].split(",")
    first = rows[1].split(",")
    first[header.index("dob")] = "2019-13-45"
    upload = "\n".join([rows[0], ",".join(first)]) + "\n"
    answer = client.post("/ui/workbench", data={"mapping": "site-a", "file": (io.BytesIO(upload.encode()), "x.csv")},
                         content_type="multipart/form-data", headers={"Origin": "http://localhost"})
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "2019-13-45" not in text
    assert "(withheld: a direct identifier)" in text


def test_a_fragment_opened_as_a_page_is_the_whole_study_page(client, monkeypatch):
    """Without the page's script (no X-Fragment header) a section's URL leads to the study page
    with every section in place. (Fragments are for a study past IN_PLACE_CHILDREN: made one here.)"""
    monkeypatch.setattr("adapter.pages.study_views.IN_PLACE_CHILDREN", -1)
    answer = client.get("/ui/study/outcomes")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/ui/study?whole=1#outcomes")
    whole = client.get("/ui/study?whole=1").get_data(as_text=True)
    assert 'id="outcomes"' in whole and "data-fragment" not in whole
    assert 'data-fragment="/ui/study/outcomes"' in client.get("/ui/study").get_data(as_text=True)
