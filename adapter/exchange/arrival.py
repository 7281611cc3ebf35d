"""What the coordinating centre does with each file a site sends: verify it whole, then load it
in one transaction, or refuse it whole and put it in quarantine.

Verified, line by line and without keeping the file in memory: JSON, the manifest's type, R4
validity (`validate`'s verdict; the models run once per resource shape, _VALIDATE), the site's
label and nothing else, an id in the site's namespace (`<site>-...`) and references to the
policy's re-keyed types in it too (a site cannot write over, or point into, another site's
data), the policy's stamp, and the
identifier scan (adapter/exchange/scan.py): no name, full birth date, address, telecom, free
text or identifier other than a study pseudonym. Findings name the line, the element and the
rule, never the value.
"""
from __future__ import annotations

import collections
import hashlib
import multiprocessing
import os
import pathlib
import pickle
import re
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from adapter.errors import AdapterError
from adapter.exchange.policy import EXCHANGE_POLICY_SYSTEM, Policy
from adapter.exchange.pull_record import PULL_SYSTEM
from adapter.exchange.free_text import free_text_findings
from adapter.exchange.scan import structural_findings
from adapter.fhir.extract import Indexed, IndexRows, extract, parse_reference
from adapter.fhir.sites import sites_of
from adapter.fhir.validation import ShapeValidator
from adapter.private import open_private, private_dir
from adapter.store.repository import Repository
from adapter.workers import die_with_parent

__all__ = ["Arrival", "Refused", "digest_of", "BATCH", "prepared_path"]

BATCH = 500  # resources written at a time inside a file's transaction
CHUNK = 250  # lines a verifying worker checks at a time (at most 2 chunks per worker in flight)
_MAX_PROBLEMS = 20  # said per refused file; the rest are counted
def _references(node: Any) -> Iterator[str]:
    """`Type/id` of every literal reference in a parsed resource, parsed as the store parses it
    (relative, absolute, versioned); a reference of no such shape yields "?/<reference>"."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                rtype, rid = parse_reference(value)
                if rtype and rid:
                    yield f"{rtype}/{rid}"
                elif not value.startswith(("#", "urn:")):
                    yield f"?/{value}"
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


class Refused(AdapterError):
    """A file that failed verification; `problems` say where and why (no values)."""

    def __init__(self, file: str, problems: list[str], more: int) -> None:
        super().__init__(f"{file}: " + "; ".join(problems[:3]) + (f" (+{more} more)" if more else ""))
        self.file, self.problems, self.more = file, problems, more


def digest_of(path: pathlib.Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


MAX_LINE = 16 << 20  # bytes: no resource a site sends is near it; a longer line is refused


def _lines(path: pathlib.Path) -> Iterator[tuple[int, bytes]]:
    """The file's non-blank lines; never more than MAX_LINE bytes of one held (Refused)."""
    with path.open("rb") as handle:
        number = 0
        while line := handle.readline(MAX_LINE + 1):
            number += 1
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                raise Refused(path.name, [f"line {number}: longer than {MAX_LINE} bytes"], 0)
            if line.strip():
                yield number, line




_WORKER: dict[str, Arrival] = {}
# `validate`'s verdict on every resource, the R4B models once per shape: a site's files are
# made of a few hundred shapes (tests/test_shape_validation.py holds it to validate's answers
# on mutants, the broken set and hostile shapes). One per process: forked workers carry their own.
_VALIDATE = ShapeValidator()


def _init_worker(parent: int, arrival: Arrival) -> None:
    die_with_parent(parent)
    _WORKER["arrival"] = arrival


def _verify_chunk(rtype: str, lines: list[tuple[int, bytes]]) -> tuple[list[str], int, set[str], set[str], bytes]:
    """In a worker: (problems, up to the cap, "line N: ..."; how many more; policies seen; and,
    when no line has a problem, the parsed resources with their index rows, pickled) of some
    consecutive lines of a file, and the types they refer to."""
    arrival = _WORKER["arrival"]
    arrival.policies_seen, arrival.types_referred = set(), set()
    problems: list[str] = []
    parsed: list[dict[str, Any] | None] = []
    more = 0
    for number, line in lines:
        resource, found = arrival._problems_of(line, rtype)
        parsed.append(resource)
        for problem in found:
            if len(problems) < _MAX_PROBLEMS:
                problems.append(f"line {number}: {problem}")
            else:
                more += 1
    if problems or more:
        return problems, more, arrival.policies_seen, arrival.types_referred, b""
    # What the load needs of these lines, done here rather than in the loading process: the
    # resources as parsed and checked, and their index rows (the store's own extract()).
    prepared = [(r, extract(r)) for r in parsed if r is not None]
    return problems, more, arrival.policies_seen, arrival.types_referred, pickle.dumps(prepared,
                                                                                       pickle.HIGHEST_PROTOCOL)


def prepared_path(path: pathlib.Path) -> pathlib.Path:
    """Beside a verified file: its resources as checked, with their index rows (see verify)."""
    return path.with_name(path.name + ".prepared")


def _prepared(path: pathlib.Path) -> Iterator[list[tuple[dict[str, Any], IndexRows]]]:
    with path.open("rb") as handle:
        while header := handle.read(8):
            yield pickle.loads(handle.read(int.from_bytes(header, "big")))


@dataclass
class Arrival:
    """The checks and loads for one site's pull under one policy.

    With `workers` > 1, a file's lines are checked by that many processes (forked, so they
    have the policy and the validator's caches), in chunks, at most two chunks per worker in
    flight: the file is still read once, in order, and never held whole. The workers also
    extract the index rows of what they checked; a file that passes is kept beside itself with
    them (`prepared_path`, written as the chunks come back, renamed into place only once the
    whole file passed), and `load` writes those very resources with their rows, without parsing
    or extracting again. `close()` ends the workers."""

    site: str
    policy: Policy
    quarantine: pathlib.Path
    policies_seen: set[str] = field(default_factory=set)
    types_referred: set[str] = field(default_factory=set)  # by the last file verified (for the load order)
    workers: int = 1
    other_sites: frozenset[str] = frozenset()  # the other sites the centre pulls: not to be pointed into
    _pool: ProcessPoolExecutor | None = field(default=None, repr=False, compare=False)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("fork"),
                                             initializer=_init_worker, initargs=(os.getpid(), self))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __getstate__(self) -> dict[str, Any]:  # what a worker gets: not the pool
        return {**self.__dict__, "_pool": None}

    def in_namespace(self, rtype: str, rid: str) -> bool:
        """`<site>-<32 hex>` for the re-keyed types, `<site>-<name>` (no further '-') for the
        others: site-a's ids can never be those of a site-a-north."""
        if rtype in self.policy.rekey_ids:
            return re.fullmatch(re.escape(self.site) + "-[0-9a-f]{32}", rid) is not None
        return re.fullmatch(re.escape(self.site) + r"-[A-Za-z0-9.]+", rid) is not None

    def _problems_of(self, line: bytes, rtype: str) -> tuple[dict[str, Any] | None, list[str]]:
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None, ["not JSON"]
        if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
            return None, [f"not a {rtype} (the manifest's type for this file)"]
        try:
            problems = [f"{i.expression or rtype}: {i.diagnostics}" for i in _VALIDATE(resource)]
        except (ValueError, RecursionError):  # nested beyond what the validators walk
            return resource, ["nested too deeply to be checked"]
        rid = resource.get("id")
        if not (isinstance(rid, str) and self.in_namespace(rtype, rid)):
            problems.append(f"{rtype}.id: not in the namespace of {self.site}")
        if self.policy.tree(rtype) is None:
            problems.append(f"{rtype}: the policy {self.policy.name} lets no {rtype} out of a site")
        labels = sites_of(resource)
        if labels != {self.site}:
            problems.append(f"{rtype}.meta.security: labelled for {', '.join(sorted(labels)) or 'no site'}, "
                            f"not {self.site} alone")
        if any(isinstance(t, dict) and t.get("system") == PULL_SYSTEM for t in (resource.get("meta") or {}).get("tag", [])):
            problems.append(f"{rtype}.meta.tag: the centre's own pull record tag, which no site may send")
        outside = False
        for reference in _references(resource):
            ref_type, _, ref_id = reference.partition("/")
            if ref_type == "?":
                problems.append("a reference that names no Type/id")
                continue
            self.types_referred.add(ref_type)
            if not outside and not self.in_namespace(ref_type, ref_id) and (
                    ref_type in self.policy.rekey_ids or any(ref_id.startswith(f"{o}-") for o in self.other_sites)):
                problems.append(f"a reference to {ref_type} outside the namespace of {self.site}")
                outside = True
        try:
            findings = structural_findings(resource, pseudonym_system=self.policy.pseudonym_system,
                                           policy=(EXCHANGE_POLICY_SYSTEM, self.policy.name),
                                           other_systems=self.policy.non_personal_identifiers)
        except RecursionError:
            return resource, [*problems, "nested too deeply to be checked"]
        problems.extend(f"{f.path}: {f.reason} ({f.kind})" for f in findings)
        problems.extend(f"{path}: {what} arrived (free-text)" for path, what in free_text_findings(
            resource, self.policy.extensions, self.policy.free_text_kept))
        for coding in (resource.get("meta") or {}).get("security", []):
            if isinstance(coding, dict) and coding.get("system") == EXCHANGE_POLICY_SYSTEM:
                self.policies_seen.add(f"{coding.get('code')}|{coding.get('version')}")
        return resource, problems

    def verify(self, path: pathlib.Path, rtype: str) -> int:
        """The number of resources in a file that passes every check; Refused otherwise."""
        self.types_referred = set()
        if self.workers > 1:
            return self._verify_in_workers(path, rtype)
        problems: list[str] = []
        more = count = 0
        for number, line in _lines(path):
            count += 1
            for problem in self._problems_of(line, rtype)[1]:
                if len(problems) < _MAX_PROBLEMS:
                    problems.append(f"line {number}: {problem}")
                else:
                    more += 1
        if problems:
            raise Refused(path.name, problems, more)
        return count

    def _verify_in_workers(self, path: pathlib.Path, rtype: str) -> int:
        pool = self._executor()
        problems: list[str] = []
        more = count = 0
        in_flight: collections.deque[Future[tuple[list[str], int, set[str], set[str], bytes]]] = \
            collections.deque()
        part = path.with_name(path.name + ".prepared.part")
        with open_private(part, "wb") as out:
            def drain(limit: int) -> None:
                nonlocal more
                while len(in_flight) > limit:
                    found, beyond, seen, referred, prepared = in_flight.popleft().result()
                    self.policies_seen |= seen
                    self.types_referred |= referred
                    room = _MAX_PROBLEMS - len(problems)
                    problems.extend(found[:room])
                    more += beyond + len(found[room:])
                    if not (problems or more):
                        out.write(len(prepared).to_bytes(8, "big"))
                        out.write(prepared)

            chunk: list[tuple[int, bytes]] = []
            try:
                for number, line in _lines(path):
                    count += 1
                    chunk.append((number, line))
                    if len(chunk) >= CHUNK:
                        in_flight.append(pool.submit(_verify_chunk, rtype, chunk))
                        chunk = []
                        drain(2 * self.workers)
                if chunk:
                    in_flight.append(pool.submit(_verify_chunk, rtype, chunk))
                drain(0)
            finally:
                for future in in_flight:
                    future.cancel()
        if problems or more:
            part.unlink()
            raise Refused(path.name, problems, more)
        os.replace(part, prepared_path(path))
        return count

    def verify_deletions(self, path: pathlib.Path) -> int:
        problems: list[str] = []
        count = 0
        for number, _, _, problem in self._deletions(path):
            if problem:
                problems.append(f"line {number}: {problem}")
            else:
                count += 1
        if problems:
            raise Refused(path.name, problems[:_MAX_PROBLEMS], max(0, len(problems) - _MAX_PROBLEMS))
        return count

    def _deletions(self, path: pathlib.Path) -> Iterator[tuple[int, str, str, str | None]]:
        """(line, type, id, problem or None) of every DELETE entry of a deleted-resources file."""
        for number, line in _lines(path):
            try:
                bundle = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield number, "", "", "not JSON"
                continue
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get(
                    "type") != "transaction":
                yield number, "", "", "not a transaction Bundle"
                continue
            for entry in bundle.get("entry") or []:
                request = entry.get("request") if isinstance(entry, dict) else None
                url = request.get("url", "") if isinstance(request, dict) else ""
                rtype, _, rid = str(url).partition("/")
                if not isinstance(request, dict) or request.get("method") != "DELETE" or not rtype:
                    yield number, "", "", "an entry that is no DELETE of Type/id"
                elif not self.in_namespace(rtype, rid):
                    yield number, rtype, rid, f"a deletion outside the namespace of {self.site}"
                elif self.policy.tree(rtype) is None:
                    yield number, rtype, rid, f"a deletion of a {rtype}, which the policy lets no site send"
                else:
                    yield number, rtype, rid, None

    def load(self, store: Repository, path: pathlib.Path) -> tuple[int, int]:
        """(written, unchanged): the verified file in one transaction."""
        written = unchanged = 0
        prepared = prepared_path(path)
        with store.transaction() as tx:
            tx.lock_all()  # one lock for the file, not one a resource (PostgreSQL's lock table is finite)

            def write(batch: list[Any]) -> None:
                nonlocal written, unchanged
                for stored in tx.update_many(batch):
                    written += not stored.unchanged
                    unchanged += stored.unchanged

            batch: list[Any] = []
            if prepared.exists():
                # As verified, with the index rows the workers extracted (the store's path for
                # rows extracted ahead, as an ingest's workers do).
                for chunk in _prepared(prepared):
                    batch.extend(Indexed(resource, rows) for resource, rows in chunk)
                    if len(batch) >= BATCH:
                        write(batch)
                        batch = []
            else:
                for _, line in _lines(path):
                    batch.append(orjson.loads(line))
                    if len(batch) >= BATCH:
                        write(batch)
                        batch = []
            if batch:
                write(batch)
        prepared.unlink(missing_ok=True)
        return written, unchanged

    def apply_deletions(self, store: Repository, path: pathlib.Path) -> int:
        deleted = 0
        with store.transaction() as tx:
            tx.lock_all()
            for _, rtype, rid, _ in self._deletions(path):
                deleted += tx.delete(rtype, rid) is not None
        return deleted

    def refuse(self, path: pathlib.Path, error: Refused) -> pathlib.Path:
        """Move the file into quarantine/<site>/, with a .why.txt beside it; returns its place.
        The same file refused again (same digest) is kept once."""
        folder = private_dir(self.quarantine / self.site)
        digest = digest_of(path)[:16]
        for earlier in folder.glob(f"*-{digest}-{path.name}"):
            path.unlink()
            return earlier
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = folder / f"{stamp}-{digest}-{path.name}"
        os.replace(path, target)
        os.chmod(target, 0o600)  # what a site sent is the centre's to guard, however it came
        with open_private(target.with_name(target.name + ".why.txt")) as out:
            out.write("\n".join(error.problems) + (f"\n... and {error.more} more\n" if error.more else "\n"))
        return target
