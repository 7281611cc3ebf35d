"""Finding a CodeSystem, ValueSet or ConceptMap: by instance id, or by canonical url (and
version) with the repository's `url` search, then among the R4 core value sets (core.py).

Reads go through the repository the caller was given, so a client's scopes hold here as on a
read or a search (adapter/auth/guard.py).
"""
from __future__ import annotations

from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.outcomes import FhirError, Issue
from adapter.fhir.search import parse_search
from adapter.store.repository import Repository
from adapter.terminology.core import core_code_system, core_value_set

__all__ = ["find", "resolve", "split_canonical"]

_CANDIDATES = 50  # versions of one url looked at; a store holds a handful at most


def split_canonical(url: str, version: str | None) -> tuple[str, str | None]:
    """`url|version` (a canonical reference) -> (url, version); an explicit version wins.

    Examples:
        >>> split_canonical("http://x/ValueSet/a|1.0", None)
        ('http://x/ValueSet/a', '1.0')
    """
    base, bar, embedded = url.partition("|")
    return base, version or (embedded if bar and embedded else None)


def find(repo: Repository, rtype: str, url: str, version: str | None = None) -> dict[str, Any] | None:
    """The resource of that canonical url (and version): the stored one (the most recently
    written when several versions are stored and none is asked for), else a core one, else None."""
    url, version = split_canonical(url, version)
    params = [("url", url), ("_count", str(_CANDIDATES))] + ([("version", version)] if version else [])
    page = repo.search(parse_search(rtype, params))
    stored = [(e.last_updated, jsonio.parse(e.data)) for e in page.entries if e.data]
    matching = [(when, r) for when, r in stored if r.get("url") == url and version in (None, r.get("version"))]
    if matching:
        return max(matching, key=lambda pair: pair[0])[1]
    if rtype == "ValueSet":
        return core_value_set(url, version)
    if rtype == "CodeSystem":
        return core_code_system(url, version)
    return None


def resolve(repo: Repository, rtype: str, rid: str | None = None, url: str | None = None,
            version: str | None = None, expression: str = "url") -> dict[str, Any]:
    """The instance `rid`, else the resource of `url`; 404 (not-found, naming the parameter)
    when there is none, 400 when neither is given."""
    if rid is not None:
        resource: dict[str, Any] = jsonio.parse(repo.read(rtype, rid).data or b"{}")
        return resource
    if not url:
        raise FhirError(400, [Issue("required", f"say which {rtype}: parameter {expression!r} (its canonical "
                                    f"url), or call the operation on an instance ({rtype}/[id]/$...)", expression)])
    found = find(repo, rtype, url, version)
    if found is None:
        wanted = f"{url} version {version}" if version else url
        raise FhirError(404, [Issue("not-found", f"no {rtype} {wanted} on this server", expression)])
    return found
