"""Reading the audit trail back: the AuditEvents matching a client, a patient and a start time,
oldest first, and one line of text per event (`fhir-adapter audit`)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from adapter.audit.events import CLIENT_SYSTEM, SITE_SYSTEM
from adapter.fhir import jsonio
from adapter.fhir.search import encode_cursor, parse_search
from adapter.store.repository import Repository

__all__ = ["audit_events", "describe"]


def audit_events(repo: Repository, client: str | None = None, patient: str | None = None,
                 since: str | None = None) -> Iterator[dict[str, Any]]:
    params = [("_sort", "date")]
    if patient:
        params.append(("patient", patient if "/" in patient else f"Patient/{patient}"))
    if since:
        params.append(("date", f"ge{since}"))
    if client:
        params.append(("agent-name", client))  # a prefix match: narrowed to the exact client below
    cursor: tuple[Any, ...] | None = None
    while True:
        extra = [("_cursor", encode_cursor(cursor))] if cursor else []
        page = repo.search(parse_search("AuditEvent", params + [("_count", "1000"), ("_total", "none")] + extra))
        for entry in page.entries:
            event = jsonio.parse(entry.data or b"{}")
            if client is None or _client(event) == client:
                yield event
        cursor = page.next_cursor
        if cursor is None:
            return


def _client(event: dict[str, Any]) -> str | None:
    for agent in event.get("agent") or []:
        ident = (agent.get("who") or {}).get("identifier") or {}
        if ident.get("system") == CLIENT_SYSTEM:
            return str(ident.get("value"))
    return None


def _site(event: dict[str, Any]) -> str:
    for agent in event.get("agent") or []:
        for role in agent.get("role") or []:
            for coding in role.get("coding") or []:
                if coding.get("system") == SITE_SYSTEM:
                    return str(coding.get("code"))
    return "-" if _client(event) is None else "all-sites"


def describe(event: dict[str, Any]) -> str:
    """recorded client site action subtype outcome entity... (tab-separated)."""
    agent = (event.get("agent") or [{}])[0]
    who = _client(event) or (agent.get("who") or {}).get("display", "?")
    subtype = (event.get("subtype") or [{}])[0].get("code", "-")
    outcome = {"0": "ok", "4": "refused", "8": "failed", "12": "failed"}.get(event.get("outcome", ""), "?")
    entities = [(e.get("what") or {}).get("reference") or e.get("description", "") for e in event.get("entity") or []]
    return "\t".join([event.get("recorded", ""), who, _site(event), event.get("action", ""), subtype,
                      f"{outcome} ({event.get('outcomeDesc', '')[:100]})", " ".join(filter(None, entities))])
