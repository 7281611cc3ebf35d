"""Where the pages live under the gateway, which of them need no sign-in, and the sign-in cookies."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PREFIX", "COOKIE", "SESSION_COOKIE", "SIGN_IN_COOKIE", "SIGN_IN_PATH", "SignedIn", "is_page",
           "is_public_page", "is_asset"]

PREFIX = "/ui"
# The access token a person pasted at sign-in (development); read by the gateway's authorise
# hook for /ui/ paths only, never for /fhir (so the API never acts on a cookie: no CSRF there).
COOKIE = "fhir_adapter_ui_token"
# A person signed in through OpenID Connect: a random value naming a server-side session
# (adapter/store/page_sessions.py); /ui/ paths only, as the token.
SESSION_COOKIE = "fhir_adapter_ui_session"
# A sign-in under way (its state, nonce and PKCE verifier are server-side): sent back only to
# the sign-in paths, for the ten minutes a sign-in may take.
SIGN_IN_COOKIE = "fhir_adapter_ui_sign_in"
SIGN_IN_PATH = f"{PREFIX}/sign-in"
_ASSETS = (f"{PREFIX}/static/", f"{PREFIX}/assets/")
_PUBLIC = (SIGN_IN_PATH, f"{PREFIX}/sign-out")


@dataclass(frozen=True)
class SignedIn:
    """Who the pages say is signed in (flask.g.page_user, set by the gateway's authorise hook),
    and, for a person whose groups give no access, why they see nothing."""
    name: str
    why_nothing: str = ""


def is_asset(path: str) -> bool:
    """Scripts and styles: no patient data, so cacheable and served without sign-in."""
    return path.startswith(_ASSETS)


def is_public_page(path: str) -> bool:
    return is_asset(path) or path in _PUBLIC or path.startswith(SIGN_IN_PATH + "/")


def is_page(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")
