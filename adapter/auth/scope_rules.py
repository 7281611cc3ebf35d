"""Which scopes a client may be registered with, and which of those a token request gets.

`granted` is the one place the token endpoint asks; adapter/auth/scopes.py (SMART v1/v2 scope
semantics) replaces its body once merged.
"""
from __future__ import annotations

import re

from adapter.fhir.definitions import SERVED_TYPES

__all__ = ["check_scopes", "granted"]

# SMART Backend Services clients act as themselves: `system/` scopes only. v2 permissions are
# c, r, u, d, s in that order (optionally with a ?query); v1 are read, write and *.
_SCOPE = re.compile(r"system/(?P<type>\*|[A-Z][A-Za-z]+)\.(?:read|write|\*|c?r?u?d?s?(?:\?\S+)?)")


def check_scopes(text: str) -> list[str]:
    """The scopes of a registration, or ValueError naming the first that is not one."""
    scopes = text.split()
    if not scopes:
        raise ValueError("no scope given: e.g. --scope 'system/Observation.rs system/Patient.rs'")
    for scope in scopes:
        match = _SCOPE.fullmatch(scope)
        if not match or scope.split("?")[0].endswith("."):
            raise ValueError(f"{scope!r} is no SMART system scope (e.g. system/Observation.rs, "
                             "system/*.read)")
        if match["type"] != "*" and match["type"] not in SERVED_TYPES:
            raise ValueError(f"{scope!r}: this server serves no {match['type']} resources")
    return scopes


def granted(registered: str, requested: str) -> str:
    """The requested scopes the registration covers (for now: those registered verbatim)."""
    allowed = set(registered.split())
    return " ".join(s for s in dict.fromkeys(requested.split()) if s in allowed)
