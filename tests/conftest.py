"""Shared fixtures: a fresh store per test, the gateway app, and a live HTTP server."""
from __future__ import annotations

import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from adapter.gateway.app import create_app
from adapter.store.schema import INDEX_TABLES, history, resources
from adapter.store.sql_store import SqlStore

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "fixtures" / "r4-examples"
DEMO = ROOT / "fixtures" / "demo"


@pytest.fixture
def db_url(tmp_path: pathlib.Path) -> str:
    return f"sqlite:///{tmp_path / 'adapter.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    s = SqlStore(db_url)
    yield s
    s.close()


def table_counts(store: SqlStore) -> dict[str, int]:
    """Row counts of every table: equal before and after means nothing was written."""
    with store.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (resources, history, *INDEX_TABLES.values())}


@pytest.fixture
def app(db_url: str) -> Any:
    application = create_app({"DATABASE_URL": db_url, "MAX_CONTENT_LENGTH": 64 * 1024})
    yield application
    application.extensions["fhir_store"].close()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def live(app: Any) -> Iterator[str]:
    """The gateway on a free loopback port, over real HTTP; yields the service base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/fhir"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Accept"] = "application/fhir+json"
        yield session


def observation(**extra: Any) -> dict[str, Any]:
    body = {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": "Patient/p1"}}
    body.update(extra)
    return body
