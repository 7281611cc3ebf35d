"""The Patient compartment: a patient and every resource that references it, the basis of
Patient/$everything and of Patient- and Group-level Bulk Data export.

A resource is in a patient's compartment when one of its reference search parameters that may
point to a Patient does (Observation.subject, Procedure.patient, ResearchSubject.individual,
Provenance.patient, ...); read from the reference index, type by type, through its lookup index.
"""
from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, false, select

from adapter.fhir.definitions import DATA_TYPES, search_params
from adapter.store.budget import MAX_PAGE_BYTES, fitting
from adapter.store.repository import SearchPage, StoredResource
from adapter.store.schema import INDEX_TABLES, resources

__all__ = ["compartment_params", "everything_page", "compartment_types", "in_compartment"]

_REF = INDEX_TABLES["reference"]


@functools.cache
def compartment_params(resource_type: str) -> tuple[str, ...]:
    """The reference parameters of a type that may point to a Patient."""
    return tuple(sorted(code for code, p in search_params(resource_type).items()
                        if p.type == "reference" and "Patient" in p.target and not code.startswith("_")))


def compartment_types() -> tuple[str, ...]:
    return tuple(t for t in DATA_TYPES if t == "Patient" or compartment_params(t))


def _members(rtype: str, patients: list[str] | str) -> Any:
    """Ids of `rtype` resources referencing any of the patients ("*": any patient)."""
    query = select(_REF.c.res_id).where(_REF.c.res_type == rtype, _REF.c.param.in_(compartment_params(rtype)),
                                        _REF.c.target_type == "Patient")
    return query if patients == "*" else query.where(_REF.c.target_id.in_(patients))


def in_compartment(rtype: str, patients: list[str] | str) -> Any:
    """A condition on `resources`: in the compartment of these patients ("*": of any)."""
    if rtype == "Patient":
        return resources.c.res_id.is_not(None) if patients == "*" else resources.c.res_id.in_(patients)
    return resources.c.res_id.in_(_members(rtype, patients))


def everything_page(conn: Connection, patient: str, types: tuple[str, ...], since: str | None, count: int,
                    cursor: tuple[Any, ...] | None) -> SearchPage:
    """One page of a patient's compartment in (type, id) order; the cursor is the last (type, id)."""
    entries: list[StoredResource] = []
    more = False
    for rtype in sorted(t for t in types if t in compartment_types()):
        if cursor is not None and rtype < cursor[0]:
            continue
        query = select(resources.c.res_id, resources.c.version_id, resources.c.last_updated, resources.c.data) \
            .where(resources.c.res_type == rtype, resources.c.deleted == false())
        query = query.where(resources.c.res_id == patient) if rtype == "Patient" else \
            query.where(resources.c.res_id.in_(_members(rtype, [patient])))
        if since:
            query = query.where(resources.c.last_updated >= since)
        if cursor is not None and rtype == cursor[0]:
            query = query.where(resources.c.res_id > cursor[1])
        rows = conn.execute(query.order_by(resources.c.res_id).limit(count - len(entries) + 1)).all()
        entries += [StoredResource(rtype, r.res_id, r.version_id, r.last_updated, False, r.data) for r in rows]
        if len(entries) > count:
            more = True
            entries = entries[:count]
            break
    if (fits := fitting(entries, MAX_PAGE_BYTES)) < len(entries):
        entries, more = entries[:fits], True
    last = entries[-1] if entries else None
    return SearchPage(entries, None, (last.resource_type, last.id) if more and last else None)

