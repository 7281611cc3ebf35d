"""Bulk Data export jobs (FHIR Bulk Data Access IG v2, https://hl7.org/fhir/uv/bulkdata/export.html).

A job is a directory under the export root: `job.json` (its request and state, replaced
atomically), one NDJSON file per resource type, and `lock`, which the process running the job
holds (an flock, released by the kernel if that process dies). Any gateway process that finds
an unfinished job whose lock is free takes it over and runs it again from the start, so jobs
survive a restart. Resources stream from the store page by page (1,000 stored JSON documents at
a time, written as they are): memory does not grow with the export.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import pathlib
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from adapter.errors import AdapterError
from adapter.auth.guard import Access, GuardedRepository, access_of
from adapter.exchange.view import PolicyView
from adapter.fhir.dates import now_instant
from adapter.fhir.search import SearchRequest, parse_search
from adapter.private import open_private, private_dir
from adapter.store.compartment import compartment_types
from adapter.store.repository import Repository

__all__ = ["ExportRequest", "start_job", "run_job", "resume_jobs", "read_job", "cancel_job", "PAGE",
           "active_jobs", "expire_jobs", "expires_at"]

PAGE = 1000
log = logging.getLogger("adapter.export")


@dataclass(frozen=True)
class ExportRequest:
    level: str  # system | patient | group
    types: tuple[str, ...]
    since: str | None  # an instant
    type_filters: tuple[tuple[str, str], ...]  # (type, query)
    request_url: str
    group: str | None = None


def _write_json(path: pathlib.Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open_private(tmp, encoding="utf-8") as out:
        out.write(json.dumps(data, indent=1))
    os.replace(tmp, path)


def read_job(root: pathlib.Path, job_id: str) -> dict[str, Any] | None:
    if not job_id.replace("-", "").isalnum():
        return None
    try:
        return json.loads((root / job_id / "job.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def start_job(root: pathlib.Path, repo: Repository, request: ExportRequest, client: str = "") -> str:
    job_id = str(uuid.uuid4())
    directory = private_dir(root / job_id)  # the files hold patients' data
    _write_json(directory / "job.json", {
        "id": job_id, "status": "accepted", "request": request.__dict__, "transactionTime": now_instant(),
        "progress": "accepted", "output": [], "error": None, "client": client,
        # what the client may see, so that a job resumed after a restart still honours it
        "access": access.as_json() if (access := getattr(repo, "access", None)) is not None else None})
    _spawn(repo, directory)
    return job_id


def _jobs(root: pathlib.Path) -> Iterator[tuple[pathlib.Path, dict[str, Any]]]:
    """(folder, job) of every job: the folder found, not an id the file may claim."""
    for job_file in sorted(root.glob("*/job.json")) if root.exists() else []:
        job = read_job(root, job_file.parent.name)
        # A job.json without these (hand-made, or from an older version) is no job to count.
        if job is not None and isinstance(job.get("status"), str) and isinstance(job.get("transactionTime"), str):
            yield job_file.parent, job


def active_jobs(root: pathlib.Path, client: str) -> int:
    """Jobs of one client still to finish (accepted or running)."""
    return sum(1 for _, job in _jobs(root) if job.get("client", "") == client and job["status"] in ("accepted", "running"))


def expires_at(job: dict[str, Any], retention: float) -> datetime:
    """When a finished job and its files go: `retention` seconds after it ended."""
    ended = job.get("completed") or job.get("ended") or job["transactionTime"]
    return datetime.fromisoformat(ended.replace("Z", "+00:00")) + timedelta(seconds=retention)


def expire_jobs(root: pathlib.Path, retention: float) -> int:
    """Remove finished jobs (completed, failed, cancelled) older than `retention` seconds, with
    their files: exports hold patients' data and must not stay on disk. Returns how many."""
    now, removed = datetime.now(timezone.utc), 0
    for folder, job in _jobs(root):
        try:
            expired = job["status"] not in ("accepted", "running") and expires_at(job, retention) <= now
        except ValueError:  # a time that is no instant: left for a person to look at
            continue
        if expired:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _spawn(repo: Repository, directory: pathlib.Path) -> None:
    threading.Thread(target=run_job, args=(repo, directory), name=f"export-{directory.name}", daemon=True).start()


def resume_jobs(root: pathlib.Path, repo: Repository,
                held_to: Callable[[Access], Repository] | None = None) -> int:
    """Unfinished jobs nobody runs (their process died): run them here, each held to the access
    that started it (`held_to`: the store as that access may use it). Returns how many."""
    resumed = 0
    for job_file in sorted(root.glob("*/job.json")) if root.exists() else []:
        job = read_job(root, job_file.parent.name)
        if job and job["status"] in ("accepted", "running") and not _locked(job_file.parent):
            granted = job.get("access")
            if isinstance(granted, dict):
                access = access_of(granted["client"], granted["site"], granted["scope"], granted.get("policy"))
                try:
                    held = held_to(access) if held_to else GuardedRepository(repo, access)
                except Exception:  # e.g. its policy is gone or broken: that job fails, the gateway starts
                    log.exception("export %s cannot be resumed", job_file.parent.name)
                    job.update(status="failed", error="cannot be resumed", ended=now_instant())
                    _write_json(job_file, job)
                    continue
            _spawn(held if isinstance(granted, dict) else repo, job_file.parent)
            resumed += 1
    return resumed


def _locked(directory: pathlib.Path) -> bool:
    with open_private(directory / "lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def cancel_job(root: pathlib.Path, job_id: str) -> bool:
    """Mark the job cancelled and remove its files (its runner stops at its next page)."""
    job = read_job(root, job_id)
    if job is None or job["status"] == "cancelled":
        return False
    job.update(status="cancelled", ended=now_instant())
    _write_json(root / job_id / "job.json", job)
    for path in (root / job_id).glob("*.ndjson*"):
        path.unlink(missing_ok=True)
    return True


class _Cancelled(AdapterError):
    pass


def _requests(request: ExportRequest, rtype: str, whole: frozenset[str] = frozenset()) -> list[SearchRequest]:
    filters = [q for t, q in request.type_filters if t == rtype]
    params: list[tuple[str, str]] = [("_count", str(PAGE)), ("_total", "none")]
    if request.since and rtype not in whole:
        params.append(("_lastUpdated", f"ge{request.since}"))
    queries = [[*params, *_query(q)] for q in filters] or [params]
    return [parse_search(rtype, q, strict=True) for q in queries]


def _query(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl
    return parse_qsl(query, keep_blank_values=True)


def _patients(repo: Repository, request: ExportRequest) -> list[str] | str | None:
    """Whose compartments are exported: None (system level: everything), "*" (every patient),
    or a Group's active Patient members."""
    if request.level == "system":
        return None
    if request.level == "patient":
        return "*"
    # The members as stored: a policy's client names the Group, and sees its members, by shared
    # ids, which the store does not know.
    if isinstance(repo, PolicyView):
        stored = repo.unshared.read("Group", repo.stored_id("Group", request.group or ""))
    else:
        stored = repo.read("Group", request.group or "")
    group = json.loads(stored.data or b"{}")
    return sorted({m["entity"]["reference"].split("/")[-1] for m in group.get("member", [])
                   if m.get("entity", {}).get("reference", "").startswith("Patient/") and not m.get("inactive")})


def run_job(repo: Repository, directory: pathlib.Path) -> None:
    """Run (or run again) the job in `directory`, holding its lock; never raises."""
    handle = open_private(directory / "lock", "a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another process runs it
        job = read_job(directory.parent, directory.name)
        if job is None or job["status"] not in ("accepted", "running"):
            return
        for part in directory.glob("*.ndjson*"):
            part.unlink()  # a job taken over starts again
        _run(repo, directory, job)
    except _Cancelled:
        shutil.rmtree(directory, ignore_errors=True)
    except Exception as exc:  # the job fails, the gateway goes on
        log.exception("export %s failed", directory.name)
        job = read_job(directory.parent, directory.name) or {}
        if job.get("status") != "cancelled":
            # The exception (SQL text and parameters included) is for the log, not the client.
            job.update(status="failed", error=type(exc).__name__, ended=now_instant())
            _write_json(directory / "job.json", job)
    finally:
        handle.close()


def _run(repo: Repository, directory: pathlib.Path, job: dict[str, Any]) -> None:
    request = ExportRequest(**{**job["request"], "types": tuple(job["request"]["types"]),
                               "type_filters": tuple(tuple(x) for x in job["request"]["type_filters"])})
    job.update(status="running", output=[])
    _write_json(directory / "job.json", job)
    patients = _patients(repo, request)
    # Under a policy with k-anonymity, the types that carry the quasi-identifiers go whole at every
    # export: their shared form changes with the release (more children, other levels) though
    # nothing of them changed at the site, and the centre must never hold two releases at once.
    whole: frozenset[str] = getattr(repo, "sent_whole", frozenset())
    written_total = 0
    for rtype in dict.fromkeys(request.types):  # each type once, however often it was asked for
        if patients is not None and rtype not in compartment_types():
            continue
        count, path = 0, directory / f"{rtype}.ndjson"
        seen: set[str] | None = set() if len([1 for t, _ in request.type_filters if t == rtype]) > 1 else None
        with open_private(path.with_suffix(".ndjson.part"), "wb") as out:
            for search in _requests(request, rtype, whole):
                for page in repo.scan(search, patients):
                    for entry in page:
                        if seen is not None:
                            if entry.id in seen:
                                continue  # several _typeFilters of one type: each resource once
                            seen.add(entry.id)
                        out.write(entry.data or b"{}")
                        out.write(b"\n")
                        count += 1
                    written_total += len(page)
                    _checkpoint(directory, job, f"{written_total} resources written; {rtype}")
        if count:
            os.replace(path.with_suffix(".ndjson.part"), path)
            job["output"].append({"type": rtype, "file": path.name, "count": count})
        else:
            path.with_suffix(".ndjson.part").unlink()
    job["deleted"] = []
    if request.since:  # Bulk Data v2: what was deleted since, for the client to follow
        for rtype in dict.fromkeys(request.types):
            if patients is None or rtype in compartment_types():
                _write_deletions(repo, directory, job, rtype, request.since)
    job.update(status="completed", progress=f"{written_total} resources written", completed=now_instant())
    _write_json(directory / "job.json", job)


def deletions(repo: Repository, rtype: str, since: str) -> Iterator[str]:
    """Ids of the resources of `rtype` deleted at or after `since` and still deleted (newest
    version first: a resource deleted, then made again, is no deletion)."""
    seen: set[str] = set()
    cursor: int | None = None
    while True:
        page = repo.history(rtype, since=since, count=PAGE, cursor=cursor)
        for entry in page.entries:
            if entry.id not in seen:
                seen.add(entry.id)
                if entry.deleted:
                    yield entry.id
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _write_deletions(repo: Repository, directory: pathlib.Path, job: dict[str, Any], rtype: str, since: str) -> None:
    """`<type>.deleted.ndjson`: transaction Bundles of DELETE entries, up to 100 a line."""
    path, count, entries = directory / f"{rtype}.deleted.ndjson", 0, []
    part = path.with_name(path.name + ".part")
    with open_private(part, "wb") as out:
        for rid in [*deletions(repo, rtype, since), None]:
            if rid is not None:
                entries.append({"request": {"method": "DELETE", "url": f"{rtype}/{rid}"}})
                count += 1
            if entries and (rid is None or len(entries) == 100):
                out.write(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries},
                                     separators=(",", ":")).encode() + b"\n")
                entries = []
    if count:
        os.replace(part, path)
        job["deleted"].append({"type": "Bundle", "file": path.name, "count": count, "of": rtype})
    else:
        part.unlink()


def _checkpoint(directory: pathlib.Path, job: dict[str, Any], progress: str) -> None:
    current = read_job(directory.parent, directory.name)
    if current is None or current["status"] == "cancelled":
        raise _Cancelled
    job["progress"] = progress
    _write_json(directory / "job.json", job)

