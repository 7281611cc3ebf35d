"""The repository a request may use, and who asks (set by adapter/gateway/authorise.py).

With authorisation on, a request works on the store only through `GuardedRepository`, which
enforces the token's scopes and site on every read, search and write (adapter/auth/guard.py).
Handlers never see the bare store.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app, g

from adapter.auth.guard import Access, GuardedRepository
from adapter.exchange.view import PolicyView, deidentifier
from adapter.store.repository import Repository

__all__ = ["repository", "current_access", "client_name", "guarded"]


def current_access() -> Access | None:
    return g.get("access")


def client_name() -> str | None:
    access = g.get("access")
    return access.client if access is not None else None


def repository() -> Repository:
    """The store as this request may use it."""
    store: Repository = current_app.extensions["fhir_store"]
    access = g.get("access")
    return store if access is None else guarded(store, access, current_app.config)


def guarded(store: Repository, access: Access, config: Mapping[str, Any]) -> Repository:
    """The store held to `access`: its scopes and site, then its exchange policy, if any (the
    coordinating centre's client at a site sees only what the policy lets out)."""
    repo: Repository = GuardedRepository(store, access)
    if access.policy is not None:
        repo = PolicyView(repo, deidentifier(store, access.policy, config["EXCHANGE_POLICY_DIR"],
                                             config["EXCHANGE_KEY_FILE"]))
    return repo
