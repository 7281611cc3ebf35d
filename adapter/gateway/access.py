"""The repository a request may use, and who asks (set by adapter/gateway/authorise.py).

With authorisation on, a request works on the store only through `GuardedRepository`, which
enforces the token's scopes and site on every read, search and write (adapter/auth/guard.py).
Handlers never see the bare store.
"""
from __future__ import annotations

from flask import current_app, g

from adapter.auth.guard import Access, GuardedRepository
from adapter.store.repository import Repository

__all__ = ["repository", "current_access", "client_name"]


def current_access() -> Access | None:
    return g.get("access")


def client_name() -> str | None:
    access = g.get("access")
    return access.client if access is not None else None


def repository() -> Repository:
    """The store as this request may use it."""
    store: Repository = current_app.extensions["fhir_store"]
    access = g.get("access")
    return store if access is None else GuardedRepository(store, access)
