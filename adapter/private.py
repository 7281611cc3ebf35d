"""Files and folders that may hold identifiers (the SQLite store, quarantined rows with MRNs and
birth dates, Bulk Data exports): readable by their owner only, whatever the umask says.

Modes are given when the file or folder is created (never a window in which others could open
it); a file rewritten here is also narrowed if an older run left it wider.
"""
from __future__ import annotations

import os
import pathlib
from typing import IO, Any

__all__ = ["private_dir", "private_file", "open_private", "beside_store"]

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | os.PathLike[str]) -> pathlib.Path:
    """`path` and the missing folders above it, each created 0700 (existing ones are left as
    they are: they may be the user's own)."""
    path = pathlib.Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process made it first
            pass
    return path


def private_file(path: str | os.PathLike[str]) -> pathlib.Path:
    """`path` created empty 0600 unless it exists (e.g. before SQLite opens it: SQLite gives
    its -wal and -shm files the database file's mode).

    An existing file is never opened: closing any descriptor of a file drops every POSIX lock
    this process holds on it, so opening and closing a live SQLite database beside the
    process's own connections lets another process believe it is the last one and delete the
    WAL under them (SQLite, "How To Corrupt An SQLite Database File", 2.2). O_EXCL opens only
    a file it has just made, which no connection of ours can hold yet."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    return pathlib.Path(path)


def open_private(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> IO[Any]:
    """`open(path, mode)` for writing ("w", "wb", "a", "ab"), the file 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        if os.fstat(fd).st_uid == os.geteuid():  # another user's file keeps its mode
            os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def beside_store(database_url: str, name: str) -> str:
    """Where a store's companion file or folder goes (a key, exports): beside an SQLite file
    (var/NAME for var/adapter.db), else var/NAME in the working directory."""
    from sqlalchemy.engine import make_url
    database = make_url(database_url).database
    if database_url.startswith("sqlite") and database and database != ":memory:":
        return str(pathlib.Path(database).parent / name)
    return os.path.abspath(f"var/{name}")
