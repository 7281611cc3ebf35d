"""What the centre keeps of its pulls: a Provenance per successful pull in the central store
(site, the site's transactionTime, the policy versions, each file's SHA-256), from which
`--since auto` starts the next one, and a log of every attempt, failed ones too, for
`fhir-adapter exchange status`.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapter.fhir.dates import now_instant
from adapter.fhir.search import parse_search
from adapter.fhir.sites import with_site
from adapter.fhir.validation import validate
from adapter.private import open_private
from adapter.store.repository import Repository


__all__ = ["PullReport", "PULL_SYSTEM", "record_provenance", "last_success", "log_attempt", "site_status", "SiteStatus"]

PULL_SYSTEM = "http://ucmsc-cp.example.org/fhir/CodeSystem/exchange-pull"
_SITE_ID = "http://ucmsc-cp.example.org/fhir/sid/site"
_SHA256 = "http://ucmsc-cp.example.org/fhir/sid/sha256"
_POLICY_URL = "http://ucmsc-cp.example.org/fhir/exchange-policy"


@dataclass
class PullReport:
    site: str
    transaction_time: str = ""
    since: str | None = None
    received: dict[str, int] = field(default_factory=dict)  # resources by type, verified and loaded
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    refused: list[str] = field(default_factory=list)  # quarantined files with the first reason
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.refused


def _site_agent(store: Repository, site: str) -> dict[str, Any]:
    """The site's Organization, as the mapping's Provenance names it, when the centre has it (the
    protocol's definitions loaded); else the site's identifier, so that a pull from a site the
    protocol does not list is still recorded rather than refused as a dangling reference."""
    found = store.current("Organization", site)
    if found is not None:
        return {"reference": f"Organization/{site}", "display": found.get("name", site)}
    return {"identifier": {"system": _SITE_ID, "value": site}, "display": site}


def record_provenance(store: Repository, report: PullReport, policies: list[str], base: str) -> dict[str, Any]:
    """The pull's Provenance (the same id for the same export: a resumed pull writes it once)."""
    key = hashlib.sha256(f"{report.site}|{report.transaction_time}".encode()).hexdigest()[:24]
    provenance = with_site({
        # outside every site's namespace (<site>-...): no site's file can write over it
        "resourceType": "Provenance", "id": f"pull-{report.site}-{key}",
        "meta": {"tag": [{"system": PULL_SYSTEM, "code": report.site}]},
        "target": [{"identifier": {"system": _SITE_ID, "value": report.site},
                    "display": f"the data of {report.site}, as of {report.transaction_time}"}],
        "occurredDateTime": report.transaction_time, "recorded": now_instant(),
        "policy": [f"{_POLICY_URL}/{p.replace('|', '/')}" for p in policies],
        "activity": {"text": f"Bulk Data pull from {base}" + (f" since {report.since}" if report.since else "")},
        "agent": [
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                  "code": "author"}]},
             "who": _site_agent(store, report.site)},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                  "code": "assembler"}]},
             "who": {"display": "fhir-adapter exchange pull"}}],
        "entity": [{"role": "source", "what": {"identifier": {"system": _SHA256, "value": digest},
                                               "display": name}}
                   for name, digest in sorted(report.files.items())] or None}, report.site)
    if provenance["entity"] is None:
        del provenance["entity"]
    issues = validate(provenance)
    if issues:  # ours to fix, never the site's: fail loudly
        raise ValueError(f"pull Provenance invalid: {issues}")
    store.update(provenance)
    return provenance


def last_success(store: Repository, site: str) -> str | None:
    """The transactionTime of the site's last successful pull into `store`, or None."""
    page = store.search(parse_search("Provenance", [("_tag", f"{PULL_SYSTEM}|{site}"), ("_sort", "-when"),
                                                    ("_count", "1"), ("_total", "none")]))
    if not page.entries:
        return None
    return orjson.loads(page.entries[0].data or b"{}").get("occurredDateTime")  # type: ignore[no-any-return]


def log_attempt(state: pathlib.Path, entry: dict[str, Any]) -> None:
    """One line of `<state>/pulls.jsonl` (0600) for every pull attempt."""
    state.mkdir(parents=True, exist_ok=True)
    with open_private(state / "pulls.jsonl", "a") as out:
        out.write(json.dumps({"at": now_instant(), **entry}) + "\n")


class SiteStatus(dict[str, Any]):
    """site, last_attempt, last_success, transaction_time, received, refused, hours_since_success, overdue."""


def site_status(state: pathlib.Path, overdue_hours: float, sites: list[str] | None = None) -> list[SiteStatus]:
    """Per site (the logged ones and `sites`): its last attempt and success, what the last
    success received by type, files refused so far, and whether it is overdue."""
    found: dict[str, SiteStatus] = {s: SiteStatus(site=s, last_attempt=None, last_success=None, received={},
                                                  refused=0, error=None) for s in sites or []}
    log = state / "pulls.jsonl"
    for line in log.read_text().splitlines() if log.exists() else []:
        entry = json.loads(line)
        status = found.setdefault(entry["site"], SiteStatus(site=entry["site"], last_attempt=None,
                                                             last_success=None, received={}, refused=0, error=None))
        status["last_attempt"] = entry["at"]
        status["refused"] += len(entry.get("refused") or [])
        status["error"] = entry.get("error")
        if entry.get("ok"):
            status.update(last_success=entry["at"], transaction_time=entry.get("transactionTime"),
                          received=entry.get("received") or {})
    now = datetime.now(timezone.utc)
    for status in found.values():
        since = status["last_success"]
        hours = None if since is None else (now - datetime.fromisoformat(since.replace("Z", "+00:00"))
                                            ).total_seconds() / 3600
        status["hours_since_success"] = hours
        status["overdue"] = hours is None or hours > overdue_hours
    return sorted(found.values(), key=lambda s: s["site"])
