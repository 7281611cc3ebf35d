"""What the pages' views take from the app that registered them: the repository as the current
request may use it, who asks, and the HTML error page."""
from __future__ import annotations

from flask import current_app, render_template

from adapter.auth.guard import Access
from adapter.store.repository import Repository

__all__ = ["repository", "access", "error_page", "HOOKS", "OIDC", "SESSIONS"]

HOOKS = "adapter.pages"  # app.extensions key: (repository(), access()) given to pages_blueprint
OIDC = "fhir_oidc"  # app.extensions key: the OidcClient (adapter/auth/oidc.py), when configured
SESSIONS = "fhir_page_sessions"  # app.extensions key: the PageSessions (the store's)


def repository() -> Repository:
    """The store as the current request may use it (the gateway's authorisation applied)."""
    return current_app.extensions[HOOKS][0]()  # type: ignore[no-any-return]


def access() -> Access | None:
    """Who asks (None: auth off), for what the repository cannot say: which site's mapping a
    site's user may try in the workbench."""
    return current_app.extensions[HOOKS][1]()  # type: ignore[no-any-return]


def error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, message=message), status
