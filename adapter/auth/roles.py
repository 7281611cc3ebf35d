"""What a person signed in through OpenID Connect may see on the pages: their provider's groups
(or roles) mapped to the same (site, scopes) a registered API client has, so that one guard
(adapter/auth/guard.py) holds both. The mapping is data: a YAML file such as
mappings/sign-in/example-roles.yaml.

```yaml
claim: groups                  # the ID token's claim listing the person's groups; a dotted path
                               # reaches into an object (Keycloak: realm_access.roles)
groups:
  ucmsc-centre: {scope: "system/*.rs"}                 # no site: the centre, every site
  ucmsc-site-a: {site: site-a, scope: "system/*.rs"}   # site A's staff: site A only
```

A person whose groups name no entry, or entries of different access (two sites, or a site and
the centre), gets no access at all and is told why: guessing which one was meant would show
one of them more than the mapping says.
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import yaml

from adapter.auth.scopes import ScopeError, parse_scopes
from adapter.errors import AdapterError

__all__ = ["Role", "RoleMap", "RolesError", "load_roles", "role_map", "resolve"]


class RolesError(AdapterError, ValueError):
    """A role mapping that cannot be used."""


@dataclass(frozen=True)
class Role:
    site: str | None  # None: the coordinating centre
    scope: str

    def __str__(self) -> str:
        return f"{'site ' + self.site if self.site else 'every site'} ({self.scope or 'no scopes'})"


@dataclass(frozen=True)
class RoleMap:
    claim: str
    groups: dict[str, Role]


def role_map(data: Any, where: str = "the role mapping") -> RoleMap:
    """A RoleMap from parsed YAML; RolesError says what is wrong.

    >>> role_map({"groups": {"centre": {"scope": "system/*.rs"}}}).groups["centre"]
    Role(site=None, scope='system/*.rs')
    """
    if not isinstance(data, dict) or not isinstance(data.get("groups"), dict) or not data["groups"]:
        raise RolesError(f"{where}: expected `groups:` mapping each group to {{site, scope}}")
    claim = data.get("claim", "groups")
    if not isinstance(claim, str) or not claim:
        raise RolesError(f"{where}: `claim` must be the name of an ID token claim")
    groups = {}
    for name, entry in data["groups"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("scope"), str) \
                or not isinstance(entry.get("site"), (str, type(None))) or set(entry) - {"site", "scope"}:
            raise RolesError(f"{where}: group {name!r}: expected {{site: <site>, scope: <SMART scopes>}} "
                             "(no site: the coordinating centre)")
        try:
            scope = str(parse_scopes(entry["scope"]))
        except ScopeError as error:
            raise RolesError(f"{where}: group {name!r}: {error}") from None
        groups[str(name)] = Role(entry.get("site") or None, scope)
    return RoleMap(claim, groups)


def load_roles(path: str | pathlib.Path) -> RoleMap:
    try:
        data = yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise RolesError(f"{path}: {error}") from None
    return role_map(data, str(path))


def _claim(claims: dict[str, Any], path: str) -> list[str]:
    """The groups in a claim: the name whole first (Auth0's `https://hospital.example/groups`
    holds dots), then as a path into objects (Keycloak's `realm_access.roles`). A string is one
    group, never split: a single-valued claim `not centre` is not the groups `not` and `centre`.

    >>> _claim({"https://h.example/groups": ["a"]}, "https://h.example/groups"), _claim({"groups": "not centre"}, "groups")
    (['a'], ['not centre'])
    """
    node: Any = claims.get(path) if path in claims else claims
    if path not in claims:
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, str):
        return [node]
    return [str(v) for v in node] if isinstance(node, list) else []


def resolve(roles: RoleMap, claims: dict[str, Any]) -> tuple[Role | None, str]:
    """The person's Role, or None and why (a sentence for the page).

    >>> roles = role_map({"groups": {"c": {"scope": "system/*.rs"}, "a": {"site": "site-a", "scope": "system/*.rs"}}})
    >>> resolve(roles, {"groups": ["a", "other"]})
    (Role(site='site-a', scope='system/*.rs'), '')
    >>> resolve(roles, {"groups": ["other"]})[1]
    "your groups (other) give no access here: this server's mapping knows a, c"
    """
    held = _claim(claims, roles.claim)
    found = {roles.groups[g] for g in held if g in roles.groups}
    known = ", ".join(sorted(roles.groups))
    if not found:
        if not held:
            return None, f"your sign-in carries no {roles.claim!r} claim, which this server's mapping reads"
        return None, f"your groups ({', '.join(held)}) give no access here: this server's mapping knows {known}"
    if len(found) > 1:
        return None, (f"your groups ({', '.join(held)}) map to different access ({'; '.join(sorted(map(str, found)))}); "
                      "the mapping must give one, so none is given")
    return found.pop(), ""
