"""Access tokens: JWTs signed with the server's own key, verified without a database round trip.

A verified token is kept in a bounded in-process cache, so a request carrying a token seen
before costs a dict lookup rather than a signature check. A revoked client's tokens stop
working once its status, cached per process for `client_cache_seconds`, is looked up again.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from adapter.errors import AdapterError
from adapter.auth.keys import ALGORITHM, ServerKey
from adapter.store.clients import ClientRecord, ClientRegistry

__all__ = ["AccessGrant", "Unauthenticated", "TokenService", "authenticate", "DEFAULT_LIFETIME",
           "DEFAULT_CLIENT_CACHE_SECONDS"]

DEFAULT_LIFETIME = 300  # seconds; SMART Backend Services recommends at most five minutes
DEFAULT_CLIENT_CACHE_SECONDS = 5.0
_CACHE_SIZE = 10_000  # verified tokens kept per process (~300 s of tokens for many clients)


@dataclass(frozen=True)
class AccessGrant:
    """What a valid access token allows: the client, its site (None: the coordinating centre),
    the granted scopes (space-separated) and when the token expires (epoch seconds)."""
    client: str
    site: str | None
    scope: str
    expires: int
    policy: str | None = None


class Unauthenticated(AdapterError):
    """No usable access token: answer 401 with WWW-Authenticate: Bearer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenService:
    """Issues and verifies access tokens. `clock` (epoch seconds; default time.time) is when a
    token is issued and whether it has expired: tests move it forward instead of sleeping."""

    def __init__(self, key: ServerKey, clients: ClientRegistry, lifetime: int = DEFAULT_LIFETIME,
                 client_cache_seconds: float = DEFAULT_CLIENT_CACHE_SECONDS,
                 cache_size: int = _CACHE_SIZE, clock: Callable[[], float] = time.time) -> None:
        self.key, self.clients, self.lifetime, self.clock = key, clients, lifetime, clock
        self.client_cache_seconds = client_cache_seconds
        self._verified: dict[str, AccessGrant] = {}
        self._cache_size = cache_size
        self._client_status: dict[str, tuple[float, bool]] = {}  # name -> (checked at, usable)

    def issue(self, client: ClientRecord, scope: str, issuer: str,
              now: float | None = None) -> tuple[str, int]:
        """A signed access token for `client` with the granted `scope`, and its lifetime."""
        issued = int(self.clock() if now is None else now)
        claims: dict[str, Any] = {
            "iss": issuer, "sub": client.name, "iat": issued, "exp": issued + self.lifetime,
            "jti": uuid.uuid4().hex, "scope": scope, "site": client.site,
        }
        if client.policy is not None:
            claims["policy"] = client.policy
        header = {"alg": ALGORITHM, "kid": self.key.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, self.key.key, algorithms=[ALGORITHM]), self.lifetime

    def authenticate(self, authorization: str | None, now: float | None = None) -> AccessGrant:
        """The grant of the request's `Authorization: Bearer` token, or Unauthenticated."""
        if not authorization:
            raise Unauthenticated("no access token")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise Unauthenticated("the Authorization header is not 'Bearer <token>'")
        return self.verify(token, now)

    def verify(self, token: str, now: float | None = None) -> AccessGrant:
        now = self.clock() if now is None else now
        grant = self._verified.get(token)
        if grant is None:
            grant = self._verify_signed(token)
        if grant.expires <= now:
            self._verified.pop(token, None)
            raise Unauthenticated("the access token has expired")
        if not self._client_usable(grant.client, now):
            raise Unauthenticated(f"client {grant.client!r} is revoked or no longer registered")
        if token not in self._verified:
            if len(self._verified) >= self._cache_size:
                for old in list(self._verified)[: self._cache_size // 2]:  # the oldest half
                    self._verified.pop(old, None)  # another thread may have taken it
            self._verified[token] = grant
        return grant

    def _verify_signed(self, token: str) -> AccessGrant:
        try:
            # Only this server's key and its one algorithm: a token signed by any other key,
            # or with `none` or HMAC, fails here.
            claims = jwt.decode(token, self.key.key, algorithms=[ALGORITHM]).claims
        except (JoseError, ValueError) as exc:
            raise Unauthenticated(f"the access token is not one this server signed ({exc})") from None
        exp, client, scope, site = (claims.get(k) for k in ("exp", "sub", "scope", "site"))
        if not isinstance(exp, int) or not isinstance(client, str) or not isinstance(scope, str) \
                or not (site is None or isinstance(site, str)):
            raise Unauthenticated("the access token lacks exp, sub or scope")
        policy = claims.get("policy")
        return AccessGrant(client, site, scope, exp, policy if isinstance(policy, str) else None)

    def _client_usable(self, name: str, now: float) -> bool:
        checked = self._client_status.get(name)
        if checked is not None and now - checked[0] < self.client_cache_seconds:
            return checked[1]
        record = self.clients.get_client(name)
        usable = record is not None and not record.revoked
        self._client_status[name] = (now, usable)
        return usable


def authenticate(authorization: str | None, now: float | None = None, app: Any = None) -> AccessGrant:
    """The one token check of requests and pages: the Flask app's TokenService.authenticate
    (`app`, else the current app: the lean read path runs outside Flask's app context).

    Flask is imported here only: the app, not this module, holds the service (each app has its
    own key and store, and tests run several in one process).
    """
    if app is None:
        from flask import current_app
        app = current_app
    service: TokenService | None = app.extensions.get("fhir_auth")
    if service is None:
        raise Unauthenticated("authorisation is not set up on this server (config AUTH is off)")
    return service.authenticate(authorization, now)
