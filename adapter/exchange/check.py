"""`fhir-adapter exchange check POLICY`: the policy run over the site's whole store, and what
comes out scanned, before anything leaves.

Each resource the policy lets out is validated (R4, as the centre will) and scanned: for the
elements that hold direct identifiers whoever the child (adapter/exchange/scan.py), and for the
site's own children's identifiers, literally: the MRNs of the site's source exports (the columns
its mapping marks as the MRN), their birth dates, and what the store itself holds of each child
(full birth dates, names, telecoms, addresses, identifier values such as the record number).
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapter.exchange.anonymity import Release
from adapter.exchange.deidentify import Deidentifier
from adapter.exchange.free_text import free_text_findings
from adapter.exchange.policy import EXCHANGE_POLICY_SYSTEM
from adapter.exchange.scan import Needles, structural_findings
from adapter.fhir.definitions import DATA_TYPES
from adapter.fhir.search import parse_search
from adapter.fhir.validation import validate
from adapter.store.repository import Repository

__all__ = ["CheckReport", "check_policy", "store_needles"]

_SHOWN = 50  # problems listed; all are counted


@dataclass
class CheckReport:
    shared: Counter[str] = field(default_factory=Counter)  # resources the policy lets out, by type
    withheld: Counter[str] = field(default_factory=Counter)  # resources it keeps in, by type
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    release: Release | None = None  # the policy's k-anonymity on this store (None: it declares none)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < _SHOWN:
            self.problems.append(problem)


def _every(repo: Repository, rtype: str) -> Iterator[bytes]:
    request = parse_search(rtype, [("_count", "1000"), ("_total", "none")])
    for page in repo.scan(request):
        for entry in page:
            yield entry.data or b"{}"


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def store_needles(repo: Repository, needles: Needles) -> Needles:
    """What the store holds of each child that must not leave, added to `needles`."""
    for data in _every(repo, "Patient"):
        patient = json.loads(data)
        if isinstance(patient.get("birthDate"), str) and len(patient["birthDate"]) >= 10:
            needles.add("birth-date", patient["birthDate"][:10])
        for kind, element in (("name", "name"), ("telephone", "telecom"), ("address", "address")):
            for text in _texts(patient.get(element)):
                if kind != "telephone" or text not in ("phone", "email", "home", "work", "mobile"):
                    needles.add(kind, text)
        for identifier in patient.get("identifier") or []:
            if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
                needles.add("identifier", identifier["value"])
    return needles


def check_policy(repo: Repository, policy: Deidentifier, needles: Needles) -> CheckReport:
    """Run the policy over every resource of `repo` and check what it lets out."""
    report = CheckReport()
    stamp = (EXCHANGE_POLICY_SYSTEM, policy.policy.name)
    for rtype in DATA_TYPES:
        for data in _every(repo, rtype):
            out = policy.apply(orjson.loads(data))
            if out is None:
                report.withheld[rtype] += 1
                continue
            report.shared[rtype] += 1
            where = f"{rtype}/{out.get('id')}"
            for issue in validate(out):
                report.add(f"{where}: {issue.expression or rtype}: not valid R4 once the policy is applied: "
                           f"{issue.diagnostics}")
            for finding in structural_findings(out, pseudonym_system=policy.policy.pseudonym_system, policy=stamp,
                                               other_systems=policy.policy.non_personal_identifiers):
                report.add(f"{where}: {finding.path}: {finding.reason} ({finding.kind})")
            for finding in needles.findings(orjson.dumps(out), where):
                report.add(f"{where}: {finding.path}: {finding.reason} ({finding.kind})")
            for path, what in free_text_findings(out, policy.policy.extensions, policy.policy.free_text_kept):
                report.add(f"{where}: {path}: {what} survives (free-text)")
    for problem in policy.policy.release_problems():
        report.add(f"the policy: {problem}")
    release = policy.release
    if release is not None and not release.ok:
        report.add(f"k-anonymity: the policy does not reach k = {release.k}: {len(release.suppressed)} of "
                   f"{release.children} children would have their quasi-identifiers withheld, more than "
                   f"{release.max_suppressed:.0%}" if all(n >= release.k for n in release.classes.values()) else
                   f"k-anonymity: classes below k = {release.k} remain: "
                   f"{sorted(n for n in release.classes.values() if n < release.k)}")
    report.release = release
    return report
