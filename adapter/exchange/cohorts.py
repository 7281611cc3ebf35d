"""Cohorts as Group resources, for Group-level export and for EHRs that pull by group: one
Group per study arm (from the ResearchSubjects) and one per site (the Patients carrying the
site's subject identifier, which site mappings give every child). Each site also gets its own
ResearchStudy, `partOf` the protocol's study, enrolling its cohort Group and naming its site's
Location (R4 ResearchStudy.site; the Location's managingOrganization is the site): what a site's
adapter publishes of itself, and what the coordinating centre receives with its data.
"""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from adapter.fhir.outcomes import invalid
from adapter.fhir.search import parse_search
from adapter.fhir.sites import with_site
from adapter.fhir.validation import validate
from adapter.protocol.organisations import SITE_SYSTEM_PATH
from adapter.store.repository import Repository

__all__ = ["build_cohorts", "build_site_cohorts", "stored_sites"]


def _all(repo: Repository, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    request = parse_search(rtype, [*params, ("_count", "1000"), ("_total", "none")])
    return [json.loads(e.data or b"{}") for page in repo.scan(request) for e in page]


def _group(gid: str, name: str, members: list[str], characteristic: str) -> dict[str, Any]:
    return {"resourceType": "Group", "id": gid, "type": "person", "actual": True, "name": name,
            "quantity": len(members),
            "characteristic": [{"code": {"text": characteristic}, "valueBoolean": True, "exclude": False}],
            "member": [{"entity": {"reference": ref}} for ref in sorted(members)]}


def _site_study(repo: Repository, study: str, site: str, title: str) -> dict[str, Any]:
    """R4's ResearchStudy.site is Reference(Location): the site's Location (whose
    managingOrganization is the site's Organization), when the protocol's definitions list the
    site; R4 has no element naming the Organization itself (R5's `associatedParty` is not R4)."""
    made = {"resourceType": "ResearchStudy", "id": f"{site}-study", "status": "active",
            "title": f"{title}: its part of {study}", "partOf": [{"reference": f"ResearchStudy/{study}"}],
            "enrollment": [{"reference": f"Group/{site}-cohort"}]}
    location = repo.current("Location", site)  # None: a site the protocol does not list
    if location is not None:
        made["site"] = [{"reference": f"Location/{site}", "display": location.get("name", site)}]
    return with_site(made, site)


def build_cohorts(repo: Repository, base: str, sites: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Create or update the cohort Groups and the sites' ResearchStudies; `sites` are (site
    code, title). Returns them."""
    arms: dict[tuple[str, str], list[str]] = defaultdict(list)
    for subject in _all(repo, "ResearchSubject", []):
        if subject.get("assignedArm") and subject.get("status") not in ("withdrawn", "ineligible"):
            study = subject["study"]["reference"].split("/")[-1]
            arms[(study, subject["assignedArm"])].append(subject["individual"]["reference"])
    groups = [_group(f"{study}-{arm}-cohort", f"{study}: children on {arm}", members,
                     f"ResearchSubject.assignedArm = {arm}") for (study, arm), members in sorted(arms.items())]
    studies = sorted({study for study, _ in arms})
    for site, title in sites:
        patients = _all(repo, "Patient", [("identifier", f"{base}/sid/{site}-subject|")])
        if patients:
            groups.append(with_site(_group(f"{site}-cohort", f"{title}: its children",
                                           [f"Patient/{p['id']}" for p in patients], f"child of {site}"), site))
            groups.extend(_site_study(repo, study, site, title) for study in studies[:1])
    for group in groups:
        issues = validate(group)
        if issues:
            raise invalid(issues)
        repo.update(group)
    return groups


def stored_sites(repo: Repository) -> tuple[str, list[tuple[str, str]]]:
    """The sites the store knows, as their Organizations say (site code, name), and the base of
    their identifiers: the protocol's sites (`protocol load`) and those declared beside their
    mappings (written by their ingests), whatever mappings this checkout ships."""
    base, sites = "", []
    for org in _all(repo, "Organization", []):
        for identifier in org.get("identifier", []):
            system = str(identifier.get("system", ""))
            if system.endswith(f"/{SITE_SYSTEM_PATH}") and identifier.get("value") == org["id"]:
                base = system.removesuffix(f"/{SITE_SYSTEM_PATH}")
                sites.append((org["id"], str(org.get("name", org["id"]))))
    return base, sorted(sites)


def build_site_cohorts(repo: Repository) -> list[dict[str, Any]]:
    """build_cohorts() for the sites of the store (stored_sites)."""
    base, sites = stored_sites(repo)
    return build_cohorts(repo, base, sites)
