"""The pages' server-side sessions: a person signed in through OpenID Connect, and the sign-ins
under way. In the store's database, not in a process: gunicorn's workers are separate
processes, and a session ended by sign-out in one must be gone in all of them at once.

The browser holds only a random value; the table holds its SHA-256, so a copy of the table
cannot be turned back into cookies.
"""
from __future__ import annotations

import abc
import hashlib
import itertools
import json
import secrets
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select

from adapter.errors import AdapterError
from adapter.store.schema import page_sessions

__all__ = ["PageSessions", "SqlPageSessions", "SESSION", "SIGN_IN", "TooManySignIns", "MAX_SIGN_INS"]

SESSION, SIGN_IN = "session", "sign-in"
_PURGE_EVERY = 32  # one new session in this many also deletes the expired ones
# Sign-ins under way at once: anyone may start one (a GET), so they are bounded, or a script
# could fill the table (and, on SQLite, queue for the write lock FHIR writes take).
MAX_SIGN_INS = 2_000


class TooManySignIns(AdapterError):
    """More sign-ins under way than MAX_SIGN_INS, even with the expired ones gone."""


def _key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class PageSessions(abc.ABC):
    @abc.abstractmethod
    def open_session(self, kind: str, data: dict[str, Any], expires: int, now: int) -> str:
        """A new session of `kind` holding `data` until `expires` (epoch seconds); its cookie value."""

    @abc.abstractmethod
    def get_session(self, kind: str, value: str, now: int) -> dict[str, Any] | None:
        """The data of a live session of `kind` with that cookie value, else None."""

    @abc.abstractmethod
    def take_session(self, kind: str, value: str, now: int) -> dict[str, Any] | None:
        """As get_session, and the session ends: of two requests with the same value, one gets it."""

    @abc.abstractmethod
    def end_session(self, value: str) -> bool:
        """End the session with that cookie value (any kind); False if there was none."""


class SqlPageSessions(PageSessions):
    """On the store's own database (needs `_autocommit`)."""

    _autocommit: Engine
    _purge_counter = itertools.count()

    def open_session(self, kind: str, data: dict[str, Any], expires: int, now: int) -> str:
        value = secrets.token_urlsafe(32)
        with self._autocommit.connect() as conn:
            if kind == SIGN_IN and self._under_way(conn, now) >= MAX_SIGN_INS:
                conn.execute(delete(page_sessions).where(page_sessions.c.expires < now))
                if self._under_way(conn, now) >= MAX_SIGN_INS:
                    raise TooManySignIns(f"{MAX_SIGN_INS} sign-ins are under way")
            conn.execute(insert(page_sessions).values(key=_key(value), kind=kind, data=json.dumps(data),
                                                      expires=expires))
            if next(self._purge_counter) % _PURGE_EVERY == 0:
                conn.execute(delete(page_sessions).where(page_sessions.c.expires < now))
        return value

    @staticmethod
    def _under_way(conn: Any, now: int) -> int:
        return int(conn.execute(select(func.count()).select_from(page_sessions).where(
            page_sessions.c.kind == SIGN_IN, page_sessions.c.expires > now)).scalar_one())

    def get_session(self, kind: str, value: str, now: int) -> dict[str, Any] | None:
        with self._autocommit.connect() as conn:
            row = conn.execute(select(page_sessions.c.data).where(
                page_sessions.c.key == _key(value), page_sessions.c.kind == kind,
                page_sessions.c.expires > now)).first()
        return json.loads(row.data) if row else None  # type: ignore[no-any-return]

    def take_session(self, kind: str, value: str, now: int) -> dict[str, Any] | None:
        found = self.get_session(kind, value, now)
        if found is None:
            return None
        with self._autocommit.connect() as conn:
            # The delete decides: a replayed callback racing the first one finds nothing to delete.
            done = conn.execute(delete(page_sessions).where(page_sessions.c.key == _key(value)))
        return found if done.rowcount == 1 else None

    def end_session(self, value: str) -> bool:
        with self._autocommit.connect() as conn:
            done = conn.execute(delete(page_sessions).where(page_sessions.c.key == _key(value)))
        return bool(done.rowcount)
