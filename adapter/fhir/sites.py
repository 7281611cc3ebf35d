"""Which trial site a resource belongs to: a security label in `meta.security`.

Site segregation rests on it (a site's client sees only resources labelled with its site), so
it is set by the adapter, never trusted from a client: the mapping labels what a site's export
makes, and the gateway labels what a site's client writes. A label rather than a lookup through
the patient: every resource carries its site itself, and a search filters on it like any other
`_security` token, in the same index.
"""
from __future__ import annotations

from typing import Any

__all__ = ["SITE_SYSTEM", "site_label", "sites_of", "with_site", "in_namespace"]

SITE_SYSTEM = "http://ucmsc-cp.example.org/fhir/CodeSystem/study-site"


def site_label(site: str) -> dict[str, str]:
    return {"system": SITE_SYSTEM, "code": site}


def sites_of(resource: dict[str, Any]) -> set[str]:
    """The sites a resource is labelled with (normally none or one).

    Examples:
        >>> sites_of({"meta": {"security": [{"system": SITE_SYSTEM, "code": "site-a"}]}})
        {'site-a'}
    """
    meta = resource.get("meta")
    labels = meta.get("security") if isinstance(meta, dict) else None
    if not isinstance(labels, list):
        return set()
    return {str(c["code"]) for c in labels
            if isinstance(c, dict) and c.get("system") == SITE_SYSTEM and isinstance(c.get("code"), str)}


def with_site(resource: dict[str, Any], site: str) -> dict[str, Any]:
    """The resource labelled with `site` (in place, once; other labels kept)."""
    meta = resource.setdefault("meta", {})
    labels = meta.setdefault("security", [])
    if site not in sites_of(resource):
        labels.append(site_label(site))
    return resource


def in_namespace(resource_id: str, site: str) -> bool:
    """Whether an id is in a site's namespace: the site code as a whole run of its `-`-separated
    parts, at its start (what the site's mapping makes: `site-a-A0001-baseline-weight`) or
    inside it (what is made for one of its resources: `ucmsc-cp-arm-1-site-a-A0001`, the CarePlan
    of $apply). A site client creates by PUT only ids in its own namespace (adapter/auth/guard.py).

    Examples:
        >>> [in_namespace(i, "site-a") for i in ("site-a-A0001", "plan-site-a-A1", "site-ab-1", "site-a", "b1")]
        [True, True, False, False, False]
    """
    return f"-{site}-" in f"-{resource_id}"
