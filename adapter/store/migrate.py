"""Versioned schema migrations (Alembic), for SQLite and PostgreSQL alike.

`upgrade()` brings a database to the newest schema and is safe to call from several processes
at once: on PostgreSQL an advisory lock, on SQLite a lock file, lets one of them migrate while
the others wait and then find nothing left to do.
"""
from __future__ import annotations

import contextlib
import functools
import fcntl
import pathlib
from collections.abc import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

from adapter.private import open_private

__all__ = ["upgrade", "current_revision", "head_revision"]

_LOCATION = str(pathlib.Path(__file__).resolve().parent / "migrations")
_PG_LOCK = 4_727_001  # advisory lock key of the migrations


def _config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _LOCATION)
    cfg.attributes["connection"] = conn
    return cfg


@functools.cache  # the scripts are read once per process, not at every store opened
def head_revision() -> str:
    return ScriptDirectory(_LOCATION).get_current_head() or "base"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _exclusive(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK})
                conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open_private(f"{database}.migrate-lock") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the newest schema; returns (revision before, revision after)."""
    with _exclusive(engine):
        before = current_revision(engine)
        head = head_revision()
        if before == head:
            return before, head
        with engine.begin() as conn:
            if before is None and inspect(conn).has_table("resources"):
                # A store made before migrations existed has the 0001 tables: adopt it.
                command.stamp(_config(conn), "0001")
            command.upgrade(_config(conn), "head")
        return before, head
