"""ValueSet/$validate-code (https://hl7.org/fhir/R4/valueset-operation-validate-code.html):
whether a code is in a value set, against its full expansion (expand.py).

A coding without a system (inside a CodeableConcept; the gateway refuses a bare code without
one) matches a member of that code alone when only one member has it. An abstract member is valid unless the client says `abstract=false` (R4 gives no default).
A wrong display answers false, with a message, as in codesystem.py.
"""
from __future__ import annotations

from typing import Any

from adapter.store.repository import Repository
from adapter.terminology.codesystem import display_issue
from adapter.terminology.expand import Member, members

__all__ = ["validate_code_in_value_set"]


def _check(member_list: list[Member], vs_url: str, system: str | None, code: str, display: str | None,
           abstract: bool | None) -> tuple[bool, str | None, str | None]:
    hits = [m for m in member_list if m.code == code and system in (None, m.system)]
    where = f"{system}#{code}" if system else code
    if not hits:
        return False, f"{where} is not in the value set {vs_url}", None
    if len(hits) > 1:
        return False, (f"the code {code!r} is in the value set {vs_url} in more than one system "
                       f"({', '.join(sorted(str(m.system) for m in hits))}): say which"), None
    member = hits[0]
    if member.abstract and abstract is False:
        return False, f"{where} is abstract: not for use where abstract=false", member.display
    problem = display_issue({"code": code, "display": member.display, "designation": list(member.designation)},
                            display, member.system or "")
    return problem is None, problem, member.display


def validate_code_in_value_set(repo: Repository, vs: dict[str, Any], codings: list[dict[str, Any]],
                               abstract: bool | None = None) -> tuple[bool, str | None, str | None]:
    """(result, message, display) for one or more codings (a CodeableConcept's): true when any is
    valid; the messages of the others are kept."""
    member_list = members(repo, vs)
    url = str(vs.get("url") or vs.get("id") or "(inline)")
    results = [_check(member_list, url, c.get("system"), c["code"], c.get("display"), abstract) for c in codings]
    valid = [r for r in results if r[0]]
    if valid:
        return True, None, valid[0][2]
    messages = "; ".join(r[1] for r in results if r[1])
    return False, messages or None, next((r[2] for r in results if r[2]), None)
