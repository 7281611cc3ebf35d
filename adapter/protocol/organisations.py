"""The trial's sponsor and sites as FHIR R4 Organization and Location resources.

A site is an Organization (who: the author of its data, https://hl7.org/fhir/R4/organization.html)
and a Location (where the trial runs there, https://hl7.org/fhir/R4/location.html), both with the
site code as id. R4's ResearchStudy.site is Reference(Location), so a study names its sites by
their Locations, and each Location's managingOrganization leads to the Organization; the
sponsor is R4's ResearchStudy.sponsor, Reference(Organization). The site codes are also the
codes of the security label that segregates each site's data (adapter/fhir/sites.py): they are
published as the CodeSystem `study-site`, so that the label's codes are served too.
"""
from __future__ import annotations

from typing import Any

from adapter.fhir.sites import SITE_SYSTEM
from adapter.protocol.spec import Spec

__all__ = ["organisation_resources", "site_code_system", "sponsor_reference", "site_location_references",
           "SITE_SYSTEM_PATH", "site_resources"]

SITE_SYSTEM_PATH = "sid/site"  # {base}/sid/site|site-a: the identifier sites had before they were resources


def sponsor_reference(spec: Spec) -> dict[str, str] | None:
    sponsor = spec.data.get("sponsor")
    return {"reference": f"Organization/{sponsor['id']}", "display": sponsor["name"]} if sponsor else None


def site_location_references(spec: Spec) -> list[dict[str, str]]:
    return [{"reference": f"Location/{site}", "display": entry["location"]}
            for site, entry in spec.data.get("sites", {}).items()]


def site_code_system(spec: Spec) -> dict[str, Any]:
    """The sites as codes: the system of the site security label (adapter/fhir/sites.py)."""
    p = spec.protocol
    return {"resourceType": "CodeSystem", "id": "study-site", "url": SITE_SYSTEM,  # the label's system itself
            "version": p["version"], "name": "StudySite", "title": f"The sites of {p['title']}",
            "status": "active", "date": p["date"], "content": "complete", "caseSensitive": True,
            "concept": [{"code": site, "display": entry["name"]} for site, entry in spec.data["sites"].items()]}


def organisation_resources(spec: Spec) -> list[dict[str, Any]]:
    """The sponsor's Organization, then per site its Organization and Location (none when the
    spec names neither)."""
    out: list[dict[str, Any]] = []
    sponsor = spec.data.get("sponsor")
    if sponsor:
        org: dict[str, Any] = {"resourceType": "Organization", "id": sponsor["id"], "active": True,
                               "name": sponsor["name"]}
        if sponsor.get("alias"):
            org["alias"] = list(sponsor["alias"])
        if "country" in sponsor:
            org["address"] = [{"country": sponsor["country"]}]
        out.append(org)
    for site, entry in spec.data.get("sites", {}).items():
        out += site_resources(spec.base, site, entry)
    return out


def site_resources(base: str, site: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A site's Organization and Location: a site of the protocol spec, or one declared by its
    own file beside its mapping (adapter/mapping/site_local.py), with its other identifiers, its
    aliases and the organisation it is part of."""
    identifier = [{"system": f"{base}/{SITE_SYSTEM_PATH}", "value": site}]
    org: dict[str, Any] = {"resourceType": "Organization", "id": site, "active": True,
                           "identifier": identifier + [dict(i) for i in entry.get("identifiers", [])],
                           "name": entry["name"]}
    if entry.get("alias"):
        org["alias"] = list(entry["alias"])
    if entry.get("part_of"):
        org["partOf"] = {"display": entry["part_of"]}
    location: dict[str, Any] = {
        "resourceType": "Location", "id": site, "status": "active", "mode": "instance",
        "identifier": [dict(i) for i in identifier], "name": entry["location"],
        "managingOrganization": {"reference": f"Organization/{site}", "display": entry["name"]}}
    address = {k: entry[k] for k in ("city", "country") if k in entry}
    if address:
        org["address"] = [address]
        location["address"] = address
    return [org, location]
