"""Database engines and the per-dialect parts of writing safely.

SQLite: one file in WAL mode; a write transaction starts with BEGIN IMMEDIATE, which takes the
database's single write lock, so version checks cannot race.
PostgreSQL (psycopg 3): many writers at once; a write first takes a transaction-scoped advisory
lock per resource it touches, in one fixed order, so two writers of the same resource queue up
(version checks cannot race, creates of the same new id included) and never deadlock.
"""
from __future__ import annotations

import hashlib
import math
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Table, Text, any_, bindparam, create_engine, event, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from adapter.fhir.outcomes import FhirError, Issue
from adapter.private import private_dir, private_file

__all__ = ["normalize_url", "shown_url", "make_engine", "lock_resources", "is_postgresql", "bulk_insert", "one_of",
           "ByIdReader", "bound_statements", "request_deadline"]


def normalize_url(url: str) -> str:
    """SQLAlchemy URL for a database URL as users write it.

    A relative SQLite path is made absolute against the working directory now, so that every
    later reader of the URL (gunicorn workers, the export directory beside the file, Flask's
    send_file, which resolves relative paths against the package folder) finds the same file.

    Examples:
        >>> normalize_url("postgresql://root@127.0.0.1:5432/test")
        'postgresql+psycopg://root@127.0.0.1:5432/test'
        >>> normalize_url("sqlite:////srv/adapter.db")
        'sqlite:////srv/adapter.db'
        >>> normalize_url("sqlite:///var/adapter.db") == f"sqlite:///{os.getcwd()}/var/adapter.db"
        True
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        database = make_url(url).database
        if database and database != ":memory:":
            return make_url(url).set(database=os.path.abspath(database)).render_as_string(hide_password=False)
    return url


def shown_url(url: str) -> str:
    """A database URL fit for a terminal or a log: its password masked.

    Examples:
        >>> shown_url("postgresql://fhir:SECRET@db.example.org:5432/fhir?sslmode=require&password=SECRET")
        'postgresql://fhir:***@db.example.org:5432/fhir?password=hidden&sslmode=require'
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(a database URL that does not parse)"
    if "password" in parsed.query:  # libpq also takes it as a parameter
        parsed = parsed.update_query_dict({"password": "hidden"})
    return parsed.render_as_string(hide_password=True)


def is_postgresql(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "postgresql"


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("postgresql"):
        # No server-side prepared statements for the pooled queries: a search's generic plan
        # cannot see how selective its values are (one patient vs every weight) and was 10x
        # slower than a plan made for the values. Reads by id prepare on their own connection.
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=20,
                             connect_args={"prepare_threshold": None})
    if not url.startswith("sqlite"):
        raise ValueError(f"unsupported database URL {url.split(':')[0]!r}: use sqlite:///PATH "
                         "or postgresql://USER@HOST:PORT/DBNAME")
    database = make_url(url).database
    if database and database != ":memory:":
        private_dir(pathlib.Path(database).parent)
        private_file(database)  # before SQLite makes it (and its -wal, -shm) with the umask's mode
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy, not pysqlite, decides when to BEGIN
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("write") else "BEGIN")

    return engine


# The time.monotonic() after which the current request starts no statement; set by the gateway
# per request (threads started by a request, such as exports, do not inherit it).
request_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)
_SQLITE_CHECK_EVERY = 1000  # SQLite VM instructions between two looks at the clock


def _timed_out(message: str) -> FhirError:
    return FhirError(503, [Issue("timeout", f"{message}; narrow the request, or try again later")],
                     {"Retry-After": "10"})


def bound_statements(engine: Engine, seconds: float) -> None:
    """Stop any statement of `engine` running past `seconds` (0: no bound), and start none once
    the current request's deadline has passed: a 503 OperationOutcome (issue code timeout).

    For the gateway's engine only: loads, ingests and migrations run on engines without it.
    PostgreSQL: the session's statement_timeout (lock waits included). SQLite: a progress
    handler that interrupts a statement past its deadline, and a busy timeout of the same length
    (a wait for the write lock happens in C, where nothing else could stop it).
    """
    postgresql = is_postgresql(engine)
    millis = int(seconds * 1000)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        if postgresql:
            with dbapi_conn.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {millis}")
            dbapi_conn.commit()
            return
        deadline = record.info["deadline"] = [math.inf]
        if millis:
            dbapi_conn.execute(f"PRAGMA busy_timeout = {millis}")
        dbapi_conn.set_progress_handler(lambda: time.monotonic() > deadline[0], _SQLITE_CHECK_EVERY)

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Connection, *_: Any) -> None:
        now, request = time.monotonic(), request_deadline.get()
        if request is not None and now >= request:
            raise _timed_out("the request ran out of time")
        if not postgresql:
            conn.connection.info["deadline"][0] = min(now + seconds if seconds else math.inf,
                                                      math.inf if request is None else request)

    def _clear(info: dict[Any, Any]) -> None:  # COMMIT and ROLLBACK must never be interrupted
        if "deadline" in info:
            info["deadline"][0] = math.inf

    if not postgresql:
        event.listen(engine, "commit", lambda conn: _clear(conn.connection.info))
        event.listen(engine, "rollback", lambda conn: _clear(conn.connection.info))

        @event.listens_for(engine.pool, "reset")
        def _reset(dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
            _clear(connection_record.info)

    @event.listens_for(engine, "handle_error")
    def _translate(context: Any) -> None:
        error = context.original_exception
        if type(error).__name__ == "QueryCanceled" or (
                isinstance(error, sqlite3.OperationalError)
                and str(error) in ("interrupted", "database is locked")):
            raise _timed_out(f"a database statement ran past {seconds:g} s") from error

    engine.dispose()  # connections made before (migrations) lack the bound


def one_of(conn: Connection, column: Any, values: list[str]) -> Any:
    """`column IN values`; on PostgreSQL as `= ANY(array)`: one parameter, one cached plan,
    whatever the batch size."""
    if is_postgresql(conn):
        return column == any_(bindparam(None, values, type_=ARRAY(Text())))
    return column.in_(values)


# Resources share this many advisory locks (by hash): a transaction holds at most this many,
# however much it writes, within PostgreSQL's lock table (max_locks_per_transaction x
# connections, 6,400 by default). Two writers of different resources in one bucket wait for
# each other: rare at this size, and never wrong.
LOCK_BUCKETS = 1024


def _lock_key(resource_type: str, resource_id: str) -> int:
    digest = hashlib.blake2b(f"{resource_type}/{resource_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % LOCK_BUCKETS


_LOCK_ALL_SQL = text(f"SELECT pg_advisory_xact_lock(k) FROM generate_series(0, {LOCK_BUCKETS - 1}) AS k")


def lock_everything(conn: Connection) -> None:
    """Serialise with every other writer until this transaction ends (a whole file's load): on
    PostgreSQL every bucket, at once and in order, so no deadlock; SQLite's write lock does it."""
    if is_postgresql(conn):
        conn.execute(_LOCK_ALL_SQL)


_LOCK_SQL = text(
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT unnest(:keys) AS k ORDER BY 1) AS ordered"
).bindparams(bindparam("keys", type_=ARRAY(BIGINT)))


_SHARED_LOCK_SQL = text(
    "SELECT pg_advisory_xact_lock_shared(k) FROM (SELECT DISTINCT unnest(:keys) AS k ORDER BY 1) AS ordered"
).bindparams(bindparam("keys", type_=ARRAY(BIGINT)))


def lock_resources(conn: Connection, keys: Iterable[tuple[str, str]], shared: bool = False) -> None:
    """Serialise writers of the same resources (PostgreSQL; SQLite's write lock already does).
    `shared`: only keep them from being written (e.g. deleted) until this transaction ends."""
    if is_postgresql(conn):
        conn.execute(_SHARED_LOCK_SQL if shared else _LOCK_SQL,
                     {"keys": sorted({_lock_key(t, i) for t, i in keys})})


def bulk_insert(conn: Connection, table: Table, columns: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> None:
    """Insert many rows at once through the database's fast path, inside the current transaction.

    PostgreSQL: COPY FROM STDIN (one stream, instead of one INSERT per row); SQLite: the
    driver's executemany with a prepared statement.
    """
    if not rows:
        return
    names = ", ".join(columns)
    if is_postgresql(conn):
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", list(rows))


class ByIdReader:
    """Reads a current resource by id on the thread's own kept connection, outside the pool.

    Reading by id is the hottest request an EHR makes. A prepared statement on a kept DBAPI
    connection costs microseconds (SQLite) or one round trip (PostgreSQL), where a pooled
    SQLAlchemy round trip (checkout, BEGIN, SELECT, ROLLBACK) costs several times that.
    """

    _SQL = "SELECT version_id, last_updated, deleted, data FROM resources WHERE res_type = {0} AND res_id = {0}"

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self._sqlite = parsed.database if parsed.get_backend_name() == "sqlite" else None
        self._conninfo = None if self._sqlite else parsed.set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._local = threading.local()
        # An in-memory SQLite database exists once per connection: only the pool may read it.
        self.usable = self._conninfo is not None or self._sqlite not in (None, ":memory:")

    def _connect(self) -> Any:
        if self._sqlite:
            return sqlite3.connect(self._sqlite, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        import psycopg
        return psycopg.connect(str(self._conninfo), autocommit=True)

    def fetch(self, resource_type: str, resource_id: str) -> tuple[Any, ...] | None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        if self._sqlite:
            return conn.execute(self._SQL.format("?"), (resource_type, resource_id)).fetchone()  # type: ignore[no-any-return]
        import psycopg
        try:
            return conn.execute(self._SQL.format("%s"), (resource_type, resource_id),  # type: ignore[no-any-return]
                                prepare=True).fetchone()
        except psycopg.OperationalError:  # the server closed our connection: one fresh try
            self._local.conn = None
            conn.close()
            return self.fetch(resource_type, resource_id)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
