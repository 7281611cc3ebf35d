"""A resource written without a site label takes the site of the patient it is about.

What the centre writes for a site's child (a CarePlan from PlanDefinition/$apply, a planned
schedule, a correction) belongs to that child's site, so that the site's client sees its
patients' whole compartments. Done in the single write path, so every way in labels alike.
"""
from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, select

from adapter.fhir.sites import sites_of, with_site
from adapter.store.engines import one_of
from adapter.store.schema import resources

__all__ = ["inherit_sites"]

# The element naming the patient a resource is about, by type (the Patient compartment's
# main link); Group members are many patients and stay unlabelled unless labelled when made.
_ABOUT = ("subject", "patient", "individual")


def _patient_of(resource: dict[str, Any]) -> str | None:
    for name in _ABOUT:
        ref = resource.get(name)
        text = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(text, str) and text.startswith("Patient/") and "/" not in text[8:]:
            return text[8:]
    return None


def inherit_sites(conn: Connection, batch: list[dict[str, Any]]) -> None:
    """Label (in place) each unlabelled resource of `batch` about a labelled Patient."""
    wanted: dict[str, list[dict[str, Any]]] = {}
    for resource in batch:
        if resource.get("resourceType") == "Patient" or sites_of(resource):
            continue
        patient = _patient_of(resource)
        if patient is not None:
            wanted.setdefault(patient, []).append(resource)
    if not wanted:
        return
    in_batch = {r["id"]: r for r in batch if r.get("resourceType") == "Patient"}
    stored = {row.res_id: row.data for row in conn.execute(
        select(resources.c.res_id, resources.c.data).where(
            resources.c.res_type == "Patient", one_of(conn, resources.c.res_id, list(wanted))))}
    for patient, about in wanted.items():
        source = in_batch.get(patient) or (orjson.loads(stored[patient]) if stored.get(patient) else None)
        sites = sites_of(source) if source else set()
        if len(sites) == 1:
            for resource in about:
                with_site(resource, next(iter(sites)))
