"""SMART scopes for system-to-system access (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

v2: `system/Observation.rs`, `system/*.cruds` (the letters in that order: create, read,
update, delete, search). v1: `system/Observation.read` (= rs), `.write` (= cud), `.*` (=
cruds). Scopes of other contexts (`patient/`, `user/`) or without a resource (`openid`,
`launch`) grant nothing to a backend client and are left out of a grant. A v2 scope narrowed
by a search (`system/Observation.rs?category=laboratory`) is refused: this server cannot yet
hold a read to such a filter, and granting the whole type instead would grant too much.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from adapter.errors import AdapterError
from adapter.fhir.definitions import SERVED_TYPES

__all__ = ["Scope", "Scopes", "ScopeError", "parse_scope", "parse_scopes", "granted", "PERMISSIONS"]

PERMISSIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"(?P<context>system|patient|user)/(?P<type>\*|[A-Z][A-Za-z]{0,63})\.(?P<perms>[a-z*]+)"
                    r"(?P<query>\?.*)?")


class ScopeError(AdapterError, ValueError):
    """A scope that is not SMART syntax, or that this server cannot honour."""


@dataclass(frozen=True)
class Scope:
    resource: str  # a resource type, or "*"
    permissions: frozenset[str]  # letters of "cruds"

    def __str__(self) -> str:
        return f"system/{self.resource}.{''.join(p for p in PERMISSIONS if p in self.permissions)}"

    def covers(self, other: Scope) -> bool:
        return self.resource in ("*", other.resource) and other.permissions <= self.permissions


def parse_scope(text: str) -> Scope | None:
    """One scope; None for one that grants a backend client nothing (openid, patient/...).

    Examples:
        >>> str(parse_scope("system/Observation.read"))
        'system/Observation.rs'
        >>> parse_scope("system/*.cruds").permissions == frozenset("cruds")
        True
        >>> parse_scope("launch") is None
        True
    """
    match = _SCOPE.fullmatch(text)
    if match is None:
        if text.startswith(("system/", "patient/", "user/")):
            raise ScopeError(f"{text!r} is not a SMART scope (e.g. system/Observation.rs, system/*.read)")
        return None
    if match["context"] != "system":
        return None
    if match["query"]:
        raise ScopeError(f"{text!r}: scopes narrowed by a search (?...) are not supported here; "
                         "grant the type, or leave it out")
    rtype, perms = match["type"], match["perms"]
    if rtype != "*" and rtype not in SERVED_TYPES:
        raise ScopeError(f"{text!r}: {rtype} is not a resource type served here")
    if perms in _V1:
        letters = _V1[perms]
    elif re.fullmatch("c?r?u?d?s?", perms) and perms:
        letters = perms
    else:
        raise ScopeError(f"{text!r}: permissions are v1 read, write or *, or v2 letters of "
                         "'cruds' in that order (e.g. rs)")
    return Scope(rtype, frozenset(letters))


@dataclass(frozen=True)
class Scopes:
    """The scopes of a grant: what a client may do to which types."""

    scopes: tuple[Scope, ...]

    def allows(self, resource_type: str, permission: str) -> bool:
        return any(s.resource in ("*", resource_type) and permission in s.permissions for s in self.scopes)

    def types(self, permission: str) -> tuple[str, ...]:
        """The served types this grant allows `permission` on, in served order."""
        return tuple(t for t in SERVED_TYPES if self.allows(t, permission))

    def __str__(self) -> str:
        return " ".join(str(s) for s in self.scopes)


def parse_scopes(text: str) -> Scopes:
    """A space-separated scope string; ScopeError names the first bad scope."""
    parsed = (parse_scope(part) for part in text.split())
    return Scopes(tuple(dict.fromkeys(s for s in parsed if s is not None)))


def granted(registered: str, requested: str) -> str:
    """What a token request is granted: each requested scope narrowed to what the client's
    registered scopes cover (system/*.rs asked by a client registered for system/Observation.rs
    gets system/Observation.rs); requested scopes that grant nothing are left out. A malformed
    requested scope raises ScopeError (the token endpoint answers invalid_scope).

    Examples:
        >>> granted("system/Observation.rs system/Patient.read", "system/*.rs system/Patient.c launch")
        'system/Observation.rs system/Patient.rs'
        >>> granted("system/*.cruds", "system/Observation.read")
        'system/Observation.rs'
        >>> granted("system/Patient.rs", "system/Observation.rs")
        ''
    """
    allowed = parse_scopes(registered).scopes
    out: dict[Scope, None] = {}
    for want in parse_scopes(requested).scopes:
        for have in allowed:
            if have.resource not in ("*", want.resource) and want.resource != "*":
                continue
            resource = want.resource if want.resource != "*" else have.resource
            permissions = want.permissions & have.permissions
            if permissions:
                out[Scope(resource, permissions)] = None
    # system/*.rs granted whole makes system/Observation.rs beside it redundant
    kept = [s for s in out if not any(o != s and o.covers(s) for o in out)]
    return " ".join(str(s) for s in kept)
