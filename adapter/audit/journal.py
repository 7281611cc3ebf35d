"""The audit trail's write-ahead journal: each request's record is on disk before its answer
leaves, so neither a database outage nor a killed worker loses an event.

A process appends to its own segment file (0600) and holds an exclusive flock on it, and on
every segment it still owes to the database. The writer thread closes the segment it is about
to write (`rotate`) and deletes it once its events are committed (`release`). A segment whose
lock nobody holds belongs to a process that is gone: any writer of the same store claims it
and writes its events (`orphans`); events have fixed ids, so writing one twice changes nothing.

A segment is a run of frames: 4 bytes of length (little-endian), then that many bytes. A frame
cut short by a kill at the end of a segment is ignored.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import pathlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from adapter.private import FILE_MODE, private_dir

__all__ = ["Journal", "Segment", "journal_folder", "read_frames", "SUFFIX"]

log = logging.getLogger("adapter.audit")
SUFFIX = ".journal"
_HEADER = 4


def journal_folder(root: str | os.PathLike[str], database_url: str) -> pathlib.Path:
    """One folder per store under `root`: a journal is written to the store it was made for,
    never to another one served from the same working directory."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return pathlib.Path(root) / digest


@dataclass
class Segment:
    path: pathlib.Path
    fd: int  # open, holding the flock, until released
    size: int = 0
    frames: int = 0
    entries: list[Any] | None = None  # its records, while the writer holds them in memory

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class Journal:
    folder: pathlib.Path
    max_bytes: int  # the whole folder's segments; past it, records are kept in memory only
    _current: Segment | None = None
    _owed: int = 0  # bytes of this process's segments not yet released
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        private_dir(self.folder)

    def append(self, frame: bytes) -> bool:
        """Write one record; False when it could not be kept on disk (a full disk, the bound)."""
        data = len(frame).to_bytes(_HEADER, "little") + frame
        with self._lock:
            if self._owed + len(data) > self.max_bytes:
                return False
            try:
                if self._current is None:
                    self._current = self._new_segment()
                os.write(self._current.fd, data)
            except OSError as error:  # ENOSPC and the like: the record still goes on in memory
                log.warning("audit journal: could not write to %s: %s", self.folder, error)
                return False
            self._current.size += len(data)
            self._current.frames += 1
            self._owed += len(data)
            return True

    def rotate(self) -> Segment | None:
        """The segment written so far (None if empty); the next record starts another."""
        with self._lock:
            segment, self._current = self._current, None
            return segment

    def release(self, segment: Segment) -> None:
        """Its events are in the database: the segment goes."""
        with self._lock:
            self._owed -= segment.size
        if segment.path.exists():
            segment.path.unlink()
        segment.close()

    def _new_segment(self) -> Segment:
        # Made under a name no claimant looks at, locked, then renamed: never claimable unlocked.
        name = f"{os.getpid()}-{uuid.uuid4().hex}"
        hidden = self.folder / f".{name}.new"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = self.folder / f"{name}{SUFFIX}"
        os.rename(hidden, path)
        return Segment(path, fd)

    def orphans(self) -> Iterator[Segment]:
        """Segments of processes that are gone, each claimed (locked) by this one as it is given."""
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # released or claimed meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process lives (or another claimant has it)
                os.close(fd)
                continue
            if os.fstat(fd).st_nlink == 0:  # written and deleted by a claimant before us
                os.close(fd)
                continue
            size = os.fstat(fd).st_size
            with self._lock:
                self._owed += size
            yield Segment(path, fd, size)

    def usage(self) -> int:
        with self._lock:
            return self._owed


def read_frames(segment: Segment) -> list[bytes]:
    """The whole frames of a segment, in order (a frame cut short at its end is left out)."""
    data = pathlib.Path(segment.path).read_bytes()
    frames, at = [], 0
    while at + _HEADER <= len(data):
        size = int.from_bytes(data[at:at + _HEADER], "little")
        if at + _HEADER + size > len(data):
            log.warning("audit journal %s: its last record was cut short (a kill while writing); left out",
                        segment.path.name)
            break
        frames.append(data[at + _HEADER:at + _HEADER + size])
        at += _HEADER + size
    return frames
