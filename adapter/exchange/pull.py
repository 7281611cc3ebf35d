"""The coordinating centre pulls a site: the Bulk Data Access IG (v2) client flow, authorised by
SMART Backend Services, into the centre's store.

token (private_key_jwt, Authlib) -> kick-off (`$export`, `_since`) -> polling (honouring
`Retry-After`, showing `X-Progress`, backing off on 5xx and timeouts) -> each NDJSON file
streamed to disk (constant memory) -> verified whole (adapter/exchange/arrival.py) -> loaded in
one transaction per file, or refused whole into quarantine -> deletions applied -> a Provenance
of the pull (site, transactionTime, policy versions, file digests).

Resumable: the pull's state is `<state>/<site>/pending.json`, replaced atomically after every
step. A pull killed at any point and run again goes on with the same export job, fetches no
file it has verified already, and loads no file twice (a file's transaction either committed,
and the state says so, or wrote nothing; loading a file again changes nothing either way).
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import time
from datetime import datetime, timedelta, timezone
from collections.abc import Callable
from typing import Any

from adapter.exchange.arrival import Arrival, Refused, prepared_path
from adapter.exchange.arrival_anonymity import k_problem
from adapter.exchange.pull_record import PullReport, last_success, record_provenance
from adapter.exchange.site_client import (
    JobGone, PullFailed, PullOptions, SiteClient, download, kick_off, load_client_key, wait_for_manifest,
)
from adapter.fhir.dates import now_instant
from adapter.private import open_private, private_dir
from adapter.store.integrity import DanglingReferences
from adapter.store.repository import Repository

__all__ = ["PullOptions", "PullReport", "pull_site", "PullFailed", "load_client_key"]

log = logging.getLogger("adapter.exchange.pull")


class _State:
    """pending.json of one site: the pull under way (0600, replaced atomically)."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = private_dir(folder)
        self.path = folder / "pending.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open_private(tmp) as out:
            out.write(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)

    def finish(self) -> None:
        for part in self.folder.glob("*.ndjson*"):
            part.unlink()
        self.path.unlink(missing_ok=True)
        self.data = {}


def pull_site(store: Repository, options: PullOptions, say: Callable[[str], None] = log.info) -> PullReport:
    """Pull one site into `store`; PullFailed when the site cannot be pulled."""
    started = time.monotonic()
    site = SiteClient(options)
    state = _State(options.state / options.site)
    report = PullReport(options.site)
    if not state.data.get("status_url"):
        since = _earlier(last_success(store, options.site), options.overlap) if options.since == "auto" \
            else options.since
        state.data = {"since": since, "status_url": kick_off(site, since), "files": {}, "started": now_instant()}
        state.save()
    else:
        say(f"{options.site}: resuming the pull started {state.data['started']}")
    report.since = state.data["since"]
    try:
        return _pull(store, options, site, state, report, say, started)
    except JobGone:
        state.finish()  # the next run starts a new export, from the same point
        raise


def _pull(store: Repository, options: PullOptions, site: SiteClient, state: _State, report: PullReport,
          say: Callable[[str], None], started: float) -> PullReport:
    manifest = state.data.get("manifest") or wait_for_manifest(site, state.data["status_url"], say)
    if "manifest" not in state.data:
        state.data["manifest"] = manifest
        state.save()
    report.transaction_time = manifest["transactionTime"]
    others = frozenset(p.name for p in options.state.iterdir() if p.is_dir() and p.name not in (
        options.site, "quarantine"))  # every site pulled here has its folder
    arrival = Arrival(options.site, options.policy, options.state / "quarantine", workers=options.workers,
                      other_sites=others)
    items = [*((o, False) for o in manifest.get("output", [])), *((d, True) for d in manifest.get("deleted", []))]
    try:
        # Local names by place in the manifest: a site's URLs name nothing on the centre's disk.
        fetched = [(item, deleted, name) for index, (item, deleted) in enumerate(items)
                   if (name := _fetch(site, state, arrival, item, deleted, report, say,
                                      f"{index:04d}-{re.sub('[^A-Za-z]', '', item['type'])[:64]}"
                                      f"{'.deleted' if deleted else ''}.ndjson")) is not None]
    finally:
        arrival.close()
    problem = k_problem(store, options.site, options.policy, [
        (item["type"], state.folder / name) for item, deleted, name in fetched
        if not deleted and not state.data["files"][name].get("loaded")])
    if problem is not None:
        _refuse_all(state, arrival, fetched, report, say, problem)
        fetched = []
    _load_all(store, state, arrival, fetched, report, say)
    if report.ok and (report.written or report.deleted):
        # The policies of every file, as verified in this run or in a run that was killed after
        # verifying some (a resumed run does not see those files' stamps again).
        policies = set(arrival.policies_seen).union(*(set(done.get("policies", ()))
                                                      for done in state.data["files"].values()))
        record_provenance(store, report, sorted(policies or {f"{options.policy.name}|{options.policy.version}"}),
                          options.base)
    # A pull that changed nothing (a quiet site's nightly run: nothing, or only the quasi-identifier
    # types a k-anonymous policy sends whole, unchanged) writes nothing: `--since auto` asks from
    # the same point again next time, and `exchange status` counts it as a success.
    # Done with this export either way: what passed is loaded, what did not is in quarantine; a
    # pull with refusals records no success, so the next one asks from the same point again.
    site.delete(state.data["status_url"])
    state.finish()
    report.seconds = time.monotonic() - started
    return report


def _refuse_all(state: _State, arrival: Arrival, fetched: list[tuple[dict[str, Any], bool, str]],
                report: PullReport, say: Callable[[str], None], why: str) -> None:
    """Every file of the pull not loaded yet, into quarantine: nothing of it is loaded."""
    say(f"{arrival.site}: REFUSED the whole pull: {why}")
    for _, _, name in fetched:
        path = state.folder / name
        if not state.data["files"][name].get("loaded") and path.exists():
            where = arrival.refuse(path, Refused(name, [why], 0))
            report.refused.append(f"{name}: {why} (quarantined: {where})")
        state.data["files"].pop(name, None)
    state.save()


def _earlier(instant: str | None, seconds: float) -> str | None:
    if instant is None or seconds <= 0:
        return instant
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00")) - timedelta(seconds=seconds)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _fetch(site: SiteClient, state: _State, arrival: Arrival, item: dict[str, Any], deleted: bool,
           report: PullReport, say: Callable[[str], None], name: str) -> str | None:
    """Download and verify one file (unless that was done before a restart); its name, or None
    when it was refused and quarantined."""
    url = item["url"]
    done = state.data["files"].setdefault(name, {})
    path = state.folder / name
    if done.get("loaded") or (done.get("verified") and path.exists()):
        return name
    prepared_path(path).unlink(missing_ok=True)  # what an earlier verification left is not this file's
    done["digest"] = download(site, url, path)
    try:
        done["count"] = arrival.verify_deletions(path) if deleted else arrival.verify(path, item["type"])
        if not deleted:
            done["refers"] = sorted(arrival.types_referred - {item["type"]})
    except Refused as error:
        where = arrival.refuse(path, error)
        report.refused.append(f"{name}: {error.problems[0]} (quarantined: {where})")
        say(f"{site.options.site}: REFUSED {name}: {error}")
        state.data["files"].pop(name)
        state.save()
        return None
    done["verified"] = True
    done["policies"] = sorted(arrival.policies_seen)
    state.save()
    return name


def _load_all(store: Repository, state: _State, arrival: Arrival, fetched: list[tuple[dict[str, Any], bool, str]],
              report: PullReport, say: Callable[[str], None]) -> None:
    """Each verified file in one transaction. Files need no order: one whose references do not
    resolve yet (Procedure before BiologicallyDerivedProduct) waits for the others; the
    deletions come last. One that still does not resolve when nothing else can load is
    reported, not loaded, and the pull is not a success."""
    waiting = _in_reference_order(state, fetched)
    while waiting:
        later = []
        for item, deleted, name in waiting:
            done = state.data["files"][name]
            if not done.get("loaded"):
                path = state.folder / name
                try:
                    if deleted:
                        done["deleted"] = arrival.apply_deletions(store, path)
                    else:
                        done["written"], done["unchanged"] = arrival.load(store, path)
                except DanglingReferences as dangling:
                    later.append((item, deleted, name, dangling))
                    continue
                done["loaded"] = True
                state.save()
                path.unlink()
                say(f"{arrival.site}: {name}: {done['count']} verified and loaded")
            report.files[name] = done["digest"]
            _count(report, item, deleted, done)
        if len(later) == len(waiting):
            for _, _, name, why in later:
                report.refused.append(f"{name}: not loaded: {why.issues[0].diagnostics}")
            return
        waiting = [(item, deleted, name) for item, deleted, name, _ in later]


def _in_reference_order(state: _State, fetched: list[tuple[dict[str, Any], bool, str]]
                        ) -> list[tuple[dict[str, Any], bool, str]]:
    """Data files after the files of the types they refer to (as verification saw them), where
    that order exists, so that a file's transaction does not write all of it only to find a
    reference that does not resolve yet and roll back (holding what waits to resolve, as it
    goes); deletions last."""
    data = [f for f in fetched if not f[1]]
    ordered: list[tuple[dict[str, Any], bool, str]] = []
    while data:
        pending = {item["type"] for item, _, _ in data}
        ready = [f for f in data if not pending & set(state.data["files"][f[2]].get("refers", []))
                 - {f[0]["type"]}] or data[:1]  # a cycle: as they come, the others wait
        ordered.extend(ready)
        data = [f for f in data if f not in ready]
    return [*ordered, *(f for f in fetched if f[1])]


def _count(report: PullReport, item: dict[str, Any], deleted: bool, done: dict[str, Any]) -> None:
    if deleted:
        report.deleted += done.get("deleted", 0)
    else:
        report.received[item["type"]] = report.received.get(item["type"], 0) + done["count"]
        report.written += done.get("written", 0)
        report.unchanged += done.get("unchanged", 0)


