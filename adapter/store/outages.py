"""Telling a database that is away or full from a defect.

A server that cannot reach its database, or whose disk is full, is in a state that passes: a
client should try again later (503 with Retry-After), and the audit writer should keep its
events until the database is back. Anything else (a constraint, a value the database refuses)
is not cured by waiting.
"""
from __future__ import annotations

import errno
import sqlite3

from sqlalchemy import exc as sa

from adapter.fhir.outcomes import FhirError, Issue

__all__ = ["is_outage", "unavailable", "RETRY_AFTER"]

RETRY_AFTER = "10"  # seconds a client is asked to wait
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})
# SQLite says these of a file it cannot open or write (SQLITE_FULL, _CANTOPEN, _IOERR, _READONLY).
_SQLITE_OUTAGES = ("database or disk is full", "unable to open database file", "disk i/o error",
                   "attempt to write a readonly database")
# psycopg's OperationalErrors that are not outages: a client's own conflicts and time limits.
_PG_NOT_OUTAGES = frozenset({"DeadlockDetected", "SerializationFailure", "QueryCanceled", "LockNotAvailable"})


def is_outage(error: BaseException) -> bool:
    """The database cannot be reached or written for now (away, restarting, disk full)."""
    if isinstance(error, FhirError):
        return error.status == 503
    if isinstance(error, sa.DBAPIError):
        if error.connection_invalidated:
            return True
        return is_outage(error.orig) if error.orig is not None else False
    if isinstance(error, (sa.DisconnectionError, sa.TimeoutError)):  # the pool: none to be had
        return True
    if isinstance(error, sqlite3.Error):
        text = str(error).lower()
        return any(text.startswith(t) for t in _SQLITE_OUTAGES)
    if isinstance(error, OSError):
        return error.errno in _DISK_ERRNOS
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    if isinstance(error, psycopg.OperationalError):
        return type(error).__name__ not in _PG_NOT_OUTAGES
    return isinstance(error, psycopg.InterfaceError)


def unavailable(error: BaseException) -> FhirError:
    """The 503 a client sees for an outage: what is wrong, not how."""
    full = isinstance(error, OSError) or "full" in str(error).lower() or type(
        getattr(error, "orig", None)).__name__ == "DiskFull"
    what = "the server's disk is full" if full else "the database cannot be reached"
    return FhirError(503, [Issue("transient", f"{what}; the request could not be completed, try again later")],
                     {"Retry-After": RETRY_AFTER})
