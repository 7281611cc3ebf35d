"""Shared fixtures: a fresh store per test, the gateway app, and a live HTTP server."""
from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from adapter.gateway.app import create_app
from adapter.private import open_private
from adapter.store.migrate import head_revision
from adapter.store.schema import INDEX_TABLES, history, metadata, resources
from adapter.store.sql_store import SqlStore

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "fixtures" / "r4-examples"
DEMO = ROOT / "fixtures" / "demo"


# The audit journal (adapter/audit/journal.py) of every gateway the tests start, in-process or
# served, unless a test names its own: not the checkout's var/.
os.environ.setdefault("FHIR_ADAPTER_AUDIT_JOURNAL", tempfile.mkdtemp(prefix="fhir-adapter-audit-journal-"))

# PostgreSQL half of the suite: the server named here, one fresh schema per test.
PG_URL = os.environ.get("FHIR_ADAPTER_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
FIRST_PG_URL = PG_URL
# CI sets FHIR_ADAPTER_REQUIRE_PG=1: there an unreachable server fails the run, not skips it.
REQUIRE_PG = os.environ.get("FHIR_ADAPTER_REQUIRE_PG") == "1"


# Under pytest-xdist each worker has a database of its own, made from PG_URL's and dropped at
# the end: PostgreSQL's advisory locks (the store's write locks, adapter/store/engines.py) are
# per database, not per schema, so workers sharing one would wait on each other's writes.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
_WORKER_DATABASE: list[str] = []


@functools.cache
def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None when it can (under xdist, once this
    worker's database is made: PG_URL names it from then on)."""
    global PG_URL
    try:
        with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3,
                             autocommit=True) as conn:
            if XDIST_WORKER:
                url = make_url(PG_URL)
                name = f"{url.database}_{XDIST_WORKER}_{uuid.uuid4().hex[:8]}"
                try:
                    conn.execute(f'CREATE DATABASE "{name}"')
                except psycopg.errors.InsufficientPrivilege:
                    return None  # schemas in the shared database: correct, only more waiting
                _WORKER_DATABASE.append(name)
                PG_URL = url.set(database=name).render_as_string(hide_password=False)
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_URL} is not reachable ({str(exc).strip().splitlines()[0]}); " \
               "set FHIR_ADAPTER_TEST_PG to a server where the test user may create schemas " \
               "(and, for pytest -n, databases)"


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL whose search_path is a new, empty schema, dropped afterwards."""
    reason = postgres_unavailable()
    if reason:
        if REQUIRE_PG:
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    conninfo = PG_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# Schemas migrated once and emptied after each test, for the next: creating and migrating a
# schema per test (about 150 ms of DDL) was a fifth of the suite's PostgreSQL time.
_EMPTY_SCHEMAS: list[str] = []
_ALL_SCHEMAS: list[str] = []


def _schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


_ADMIN: list[psycopg.Connection[Any]] = []


@contextlib.contextmanager
def _admin_connection(conninfo: str) -> Iterator[psycopg.Connection[Any]]:
    """One autocommit connection kept for emptying the schemas (a connection costs about 13 ms);
    closed and forgotten when a statement on it fails."""
    if not _ADMIN or _ADMIN[0].closed:
        _ADMIN[:] = [psycopg.connect(conninfo, autocommit=True)]
        _ADMIN[0].execute("SET lock_timeout = '3s'")
    try:
        yield _ADMIN[0]
    except BaseException:
        _ADMIN.pop().close()
        raise


def _empty_postgres_schema(conninfo: str, schema: str) -> None:
    """Empty a migrated schema's tables; a psycopg.Error if the test changed its schema."""
    tables = [t.name for t in metadata.sorted_tables]
    with _admin_connection(conninfo) as conn:
        conn.execute(f'SET search_path = "{schema}"')
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        if version is None or version[0] != head_revision():
            raise psycopg.Error("schema changed by the test")
        # DELETE, not TRUNCATE: the tables are small, and TRUNCATE makes (and fsyncs) new files
        # for every table and index, about 180 ms a test, two minutes of the suite.
        sequences = [row[0] for row in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'S' AND n.nspname = %s", (schema,))]
        conn.execute("; ".join([*(f"DELETE FROM {t}" for t in reversed(tables)),
                                *(f'ALTER SEQUENCE "{q}" RESTART' for q in sequences)]))


@contextlib.contextmanager
def reused_postgres_schema() -> Iterator[str]:
    """A migrated schema with empty tables; emptied again afterwards (DELETE), or dropped
    when a test changed its schema or still holds its tables."""
    reason = postgres_unavailable()
    if reason:
        if REQUIRE_PG:
            pytest.fail(reason)
        pytest.skip(reason)
    conninfo = PG_URL.replace("postgresql+psycopg", "postgresql")
    if _EMPTY_SCHEMAS:
        schema = _EMPTY_SCHEMAS.pop()
    else:
        schema = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        _ALL_SCHEMAS.append(schema)
        SqlStore(_schema_url(schema)).close()
    yield _schema_url(schema)
    try:
        _empty_postgres_schema(conninfo, schema)
        _EMPTY_SCHEMAS.append(schema)
    except psycopg.Error:
        with contextlib.suppress(psycopg.Error), psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '3s'")
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            _ALL_SCHEMAS.remove(schema)


@pytest.fixture(scope="session", autouse=True)
def _drop_reused_schemas() -> Iterator[None]:
    yield
    _SERVED_STACK.close()  # the `served` servers, then their stores
    while _ADMIN:
        _ADMIN.pop().close()
    if _WORKER_DATABASE:  # the worker's own database, its schemas with it
        with contextlib.suppress(psycopg.Error), psycopg.connect(
                FIRST_PG_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{_WORKER_DATABASE[0]}" WITH (FORCE)')
        return
    if _ALL_SCHEMAS:
        with contextlib.suppress(psycopg.Error), psycopg.connect(
                PG_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            for schema in _ALL_SCHEMAS:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def migrated_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """For a module-scoped fixture parametrized "sqlite"/"postgresql": the URL of a new, migrated
    store of that kind (an SQLite file in a new folder, or a reused PostgreSQL schema)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("store") / "adapter.db"
        with open_private(path, "wb") as out:
            out.write(_migrated_sqlite())
        yield f"sqlite:///{path}"
    else:
        with reused_postgres_schema() as url:
            yield url


@functools.cache
def _migrated_sqlite() -> bytes:
    """The bytes of an empty, migrated SQLite store: copied for each test, not migrated again."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "template.db"
        SqlStore(f"sqlite:///{path}").close()  # closed: the WAL is checkpointed into the file
        return path.read_bytes()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """Each test that touches a store runs once on SQLite and once on PostgreSQL."""
    if "served" in request.fixturenames:  # the store of the session's server: emptied after
        url = _served_store(request.param)
        yield url
        _empty_served_store(request.param, url)
        return
    if request.param == "sqlite":
        path = tmp_path / "adapter.db"
        with open_private(path, "wb") as out:  # 0600, as the store makes its file
            out.write(_migrated_sqlite())
        yield f"sqlite:///{path}"
        return
    with reused_postgres_schema() as url:
        yield url


# The shared fixtures write what their tests need, e.g. observations of a Patient/p1 that no
# test made: they leave references unchecked. Referential integrity has its own tests
# (test_references.py, with checking on), as do the demo and the site ingests.
@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """A database never migrated: an empty SQLite file or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    s = SqlStore(db_url, check_references=False)
    yield s
    s.close()


@pytest.fixture
def checked_store(db_url: str) -> Iterator[SqlStore]:
    """A store that refuses references that do not resolve (the default outside the tests)."""
    s = SqlStore(db_url, check_references=True)
    yield s
    s.close()


def table_counts(store: SqlStore) -> dict[str, int]:
    """Row counts of every table: equal before and after means nothing was written. AuditEvent
    rows are left out: with auth on the audit is too, and even a refused request is recorded,
    by a background writer at a time of its own (tests/test_audit.py counts those)."""
    with store.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)
                                     .where(t.c.res_type != "AuditEvent")).scalar_one()
                for t in (resources, history, *INDEX_TABLES.values())}


@pytest.fixture
def app(db_url: str, tmp_path: pathlib.Path) -> Any:
    application = create_app({"DATABASE_URL": db_url, "MAX_CONTENT_LENGTH": 64 * 1024,
                              "EXPORT_DIR": str(tmp_path / "exports"), "REFERENTIAL_INTEGRITY": False})
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


# The `served` gateway: one `fhir-adapter serve` a store for the session (starting gunicorn took
# 4-5 s a test), on a store of its own that db_url gives the tests using it, emptied after each.
_SERVED_STACK = contextlib.ExitStack()
_SERVED_STORES: dict[str, str] = {}  # db_url param: database URL
_SERVERS: dict[str, tuple[subprocess.Popen[bytes], str]] = {}  # database URL: (process, base URL)


def _served_store(param: str) -> str:
    if param not in _SERVED_STORES:
        if param == "sqlite":
            folder = pathlib.Path(_SERVED_STACK.enter_context(tempfile.TemporaryDirectory()))
            with open_private(folder / "adapter.db", "wb") as out:
                out.write(_migrated_sqlite())
            _SERVED_STORES[param] = f"sqlite:///{folder / 'adapter.db'}"
        else:
            _SERVED_STORES[param] = _SERVED_STACK.enter_context(reused_postgres_schema())
    return _SERVED_STORES[param]


def _empty_served_store(param: str, url: str) -> None:
    if param == "sqlite":
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)) as conn, conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(f"DELETE FROM {table.name}")
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
                conn.execute("DELETE FROM sqlite_sequence")  # ids from 1 again, as in a new store
        return
    try:
        _empty_postgres_schema(PG_URL.replace("postgresql+psycopg", "postgresql"), url.rsplit("%3D", 1)[1])
    except psycopg.Error:  # the test changed the schema: the next one gets a new store and server
        del _SERVED_STORES[param]
        raise


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def _server(db_url: str) -> str:
    """The base URL of the session's `fhir-adapter serve` on db_url, started if need be."""
    if db_url in _SERVERS and _SERVERS[db_url][0].poll() is None:
        return _SERVERS[db_url][1]
    folder = pathlib.Path(_SERVED_STACK.enter_context(tempfile.TemporaryDirectory()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = str(pathlib.Path(sys.executable).parent / "fhir-adapter")
    proc = subprocess.Popen([cli, "serve", "--port", str(port), "--db", db_url, "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
                            env={**os.environ, "FHIR_ADAPTER_EXPORT_DIR": str(folder / "exports"),
                                 "FHIR_ADAPTER_MAX_BODY": str(64 * 1024)})
    _SERVED_STACK.callback(_stop, proc)
    base = f"http://127.0.0.1:{port}/fhir"
    wait_until_serving(f"{base}/metadata")
    _SERVERS[db_url] = proc, base
    return base


@pytest.fixture
def served(db_url: str, store: SqlStore) -> str:
    """The gateway as deployed: `fhir-adapter serve` (gunicorn, 2 workers) in its own process on
    a free loopback port, a 64 KiB body limit, Patient/p1 stored; yields the service base URL.
    The process serves the session's tests on its store (db_url), emptied after each test."""
    base = _server(db_url)
    requests.put(f"{base}/Patient/p1", json={"resourceType": "Patient", "id": "p1"},
                 headers={"Content-Type": "application/fhir+json"}, timeout=30)
    return base


@pytest.fixture(scope="session")
def four_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """The protocol and the four sites' exports through their mappings, in one SQLite store for
    the session (the outcomes tests and the pages' browser tests only read it); (store, URL).
    Four, not five: their by-hand calculations read the CSV and NDJSON exports; site E's
    workbook has its own store and by-hand test (tests/test_site_e.py)."""
    from adapter.mapping.ingest import ingest
    from adapter.mapping.spec import load_mapping
    from adapter.study.build import build_resources
    from adapter.protocol.spec import SPECS
    from adapter.protocol.spec import load_spec
    from adapter.store import open_store
    path = tmp_path_factory.mktemp("outcomes") / "four.db"
    store = open_store(f"sqlite:///{path}")
    store.load(build_resources(load_spec(SPECS / "ucmsc-cp-v1.yaml")))
    for site in ("site-a", "site-b", "site-c", "site-d"):
        ingest(load_mapping(ROOT / "mappings" / "sites" / f"{site}.yaml"),
               sorted((ROOT / "fixtures" / "sites" / site).glob("export.*")), store, SITES_KEY)
    yield store, f"sqlite:///{path}"
    store.close()


SITES_KEY = b"test-pseudonym-key-0123456789"


def observation(**extra: Any) -> dict[str, Any]:
    body = {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": "Patient/p1"}}
    body.update(extra)
    return body


def wait_until_serving(url: str, seconds: float = 90) -> requests.Response:
    """GET url until a started server answers (workers may still be importing at first)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return requests.get(url, timeout=10)
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium (never a downloaded one); skipped without it unless CI requires it.
    Here, not in a test module: Playwright's sync API runs one instance per process, so every
    module with browser tests (tests/test_pages*.py) must share this one."""
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is missing (apt-get install chromium); the pages' browser tests need it"
        if os.environ.get("FHIR_ADAPTER_REQUIRE_CHROMIUM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
