"""Logical ids (https://hl7.org/fhir/R4/datatypes.html#id): one check for every write path,
so that REST, transactions, loads and ingests refuse the same ids."""
from __future__ import annotations

import re

from adapter.fhir.outcomes import bad_request

__all__ = ["id_problem", "check_id", "computable_name"]

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def id_problem(value: object) -> str | None:
    """Why `value` is not a logical id, or None when it is one.

    Examples:
        >>> id_problem("site-a.1") is None
        True
        >>> id_problem("..")
        "'..' is not a valid id: '.' and '..' would name a path, not a resource"
    """
    if not isinstance(value, str) or not _ID.fullmatch(value):
        shown = value[:80] + "..." if isinstance(value, str) and len(value) > 80 else value
        return f"{shown!r} is not a valid id (1 to 64 of A-Z a-z 0-9 - .)"
    if value in (".", ".."):
        return f"{value!r} is not a valid id: '.' and '..' would name a path, not a resource"
    return None


def check_id(value: object, where: str) -> str:
    """`value` when it is a logical id; else a 400 naming `where`."""
    problem = id_problem(value)
    if problem:
        raise bad_request(problem, where)
    return value  # type: ignore[return-value]


def computable_name(rid: str) -> str:
    """A conformance resource's `name` from its id (R4: "a name usable by machine processing",
    PascalCase by convention; inv-0 of CodeSystem, ValueSet, ConceptMap).

    Examples:
        >>> computable_name("site-c-gb18030-csv"), computable_name("v3-ActCode")
        ('SiteCGb18030Csv', 'V3ActCode')
    """
    return "".join(part[:1].upper() + part[1:] for part in rid.replace("_", "-").split("-") if part)
