"""ValueSet/$validate-code (https://hl7.org/fhir/R4/valueset-operation-validate-code.html):
whether a code is in a value set, against its full expansion (expand.py).

A coding without a system (inside a CodeableConcept; the gateway refuses a bare code without
one) matches a member of that code alone when only one member has it. An abstract member is valid unless the client says `abstract=false` (R4 gives no default).
A wrong display answers false, with a message, as in codesystem.py. A version given with the
code (systemVersion) must be the one the value set draws on. When the code's system is held
here only in part (content fragment), a code outside it is not in the value set as far as this
server knows, and the message says the code may exist.
"""
from __future__ import annotations

from typing import Any

from adapter.store.repository import Repository
from adapter.terminology.codesystem import display_issue
from adapter.terminology.expand import Member, members

__all__ = ["validate_code_in_value_set"]


def _check(by_code: dict[str, list[Member]], vs_url: str, coding: dict[str, Any], abstract: bool | None,
           partial: set[str]) -> tuple[bool, str | None, str | None]:
    system, code, version = coding.get("system"), coding["code"], coding.get("version")
    hits = [m for m in by_code.get(code, []) if system in (None, m.system)]
    where = f"{system}#{code}" if system else code
    if version and hits and not any(m.version in (None, version) for m in hits):
        found = ", ".join(sorted({str(m.version) for m in hits}))
        return False, f"{where} is in the value set {vs_url} in version {found} of its system, not {version}", None
    hits = [m for m in hits if not version or m.version in (None, version)]
    if not hits:
        held = f" (this server holds only part of {system}: the code may be in it)" if system in partial else ""
        return False, f"{where} is not in the value set {vs_url}{held}", None
    if len(hits) > 1:
        return False, (f"the code {code!r} is in the value set {vs_url} in more than one system "
                       f"({', '.join(sorted(str(m.system) for m in hits))}): say which"), None
    member = hits[0]
    if member.abstract and abstract is False:
        return False, f"{where} is abstract: not for use where abstract=false", member.display
    problem = display_issue({"code": code, "display": member.display, "designation": list(member.designation)},
                            coding.get("display"), member.system or "")
    return problem is None, problem, member.display


def validate_code_in_value_set(repo: Repository, vs: dict[str, Any], codings: list[dict[str, Any]],
                               abstract: bool | None = None) -> tuple[bool, str | None, str | None]:
    """(result, message, display) for one or more codings (a CodeableConcept's): true when any is
    valid; the messages of the others are kept."""
    member_list, partial = members(repo, vs)
    by_code: dict[str, list[Member]] = {}
    for member in member_list:  # looked up per coding: a long CodeableConcept costs no scan each
        by_code.setdefault(member.code, []).append(member)
    url = str(vs.get("url") or vs.get("id") or "(inline)")
    results = [_check(by_code, url, c, abstract, partial) for c in codings]
    valid = [r for r in results if r[0]]
    if valid:
        return True, None, valid[0][2]
    messages = "; ".join(r[1] for r in results if r[1])
    return False, messages or None, next((r[2] for r in results if r[2]), None)
