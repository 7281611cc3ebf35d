"""Client authentication by signed assertion (RFC 7523 `private_key_jwt`, as SMART Backend
Services profiles it) and the client-credentials grant, on Authlib's OAuth 2.0 server.

Authlib verifies the signature (through joserfc) and the registered claims; on top of it: only
RS384 and ES384, the key from the client's registered JWKS (inline or URL, `jku` must be that
URL), `exp` at most five minutes ahead, a `jti` the store has never seen from that client.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin, InvalidClientError, InvalidScopeError
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key

from adapter.auth.jwks import ALGORITHM_KEYS, JwksCache, KeyNotFound
from adapter.auth.scopes import ScopeError, granted
from adapter.store.clients import ClientRecord, ClientRegistry

__all__ = ["AuthClient", "ClientAssertion", "BackendServicesGrant", "query_client", "AUTH_METHOD",
           "MAX_ASSERTION_LIFETIME", "said"]

AUTH_METHOD = "private_key_jwt"
MAX_ASSERTION_LIFETIME = 300  # seconds: SMART says exp at most five minutes in the future


def said(text: str) -> str:
    r"""`text` as an RFC 6749 error_description may hold it (%x20-21 / %x23-5B / %x5D-7E): the
    descriptions quote what the client sent (its name, a kid, a scope), and Authlib refuses a
    description outside that set with a ValueError, which was a 500.

    Examples:
        >>> said('kid "a\\b"\n')
        "kid 'a/b'?"
    """
    return "".join(c if " " <= c <= "~" and c not in '"\\' else {'"': "'", "\\": "/"}.get(c, "?") for c in text)


class AuthClient(ClientMixin):  # type: ignore[misc]
    """A registered client as Authlib asks about it."""

    def __init__(self, record: ClientRecord) -> None:
        self.record = record

    def get_client_id(self) -> str:
        return self.record.name

    def get_default_redirect_uri(self) -> None:
        return None

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == AUTH_METHOD and endpoint == "token"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # no shared secrets: asymmetric keys only

    def get_allowed_scope(self, scope: str) -> str:
        return granted(self.record.scope, scope or "")


def query_client(clients: ClientRegistry) -> Callable[[str], AuthClient]:
    def query(name: str) -> AuthClient:
        record = clients.get_client(name)
        if record is None:
            raise InvalidClientError(description=said(f"no client {name!r} is registered here"))
        if record.revoked:
            raise InvalidClientError(description=said(f"client {name!r} is revoked"))
        return AuthClient(record)
    return query


class ClientAssertion(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = AUTH_METHOD

    def __init__(self, clients: ClientRegistry, jwks: JwksCache,
                 audiences: Callable[[], list[str]]) -> None:
        super().__init__(validate_jti=True, leeway=60)
        self.clients, self.jwks, self._audiences = clients, jwks, audiences

    def get_audiences(self) -> list[str]:
        return self._audiences()  # the token endpoint's URL, as this request reached it

    def resolve_client_public_key(self, client: AuthClient) -> Callable[[Any], Key]:
        def resolve(token: Any) -> Key:  # given the parsed JWS, before its signature is checked
            try:
                return self.jwks.key_for(client.record, token.headers())
            except KeyNotFound as exc:
                raise InvalidClientError(description=said(str(exc))) from None
        return resolve

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            # Only the SMART algorithms: `none`, HMAC (e.g. keyed with a public key's bytes)
            # and every other algorithm are refused before any key is used.
            claims = jwt.decode(assertion, resolve_key, algorithms=list(ALGORITHM_KEYS)).claims
        except JoseError as exc:
            raise InvalidClientError(description=said(f"the client assertion does not verify: "
                                                      f"{exc.description or exc.error}")) from None
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and exp > time.time() + MAX_ASSERTION_LIFETIME + self.leeway:
            raise InvalidClientError(description="the client assertion's exp is more than "
                                                 f"{MAX_ASSERTION_LIFETIME} s in the future")
        self.verify_claims(claims)  # iss = sub, aud, exp, and last (it records it) the jti
        return claims

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            return False
        # Kept until the assertion could no longer pass the exp check (exp + leeway): purged
        # any earlier, a replay within the leeway would be taken as new.
        return self.clients.remember_assertion(claims["sub"], jti, int(claims["exp"]) + self.leeway)


class BackendServicesGrant(ClientCredentialsGrant):  # type: ignore[misc]
    """client_credentials with a client assertion; the requested scope is required, and the
    token gets the part of it the registration covers."""

    TOKEN_ENDPOINT_AUTH_METHODS = [AUTH_METHOD]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = self.request.payload.scope
        if not requested or not requested.strip():
            raise InvalidRequestError("the scope parameter is required, e.g. scope=system/Patient.rs")
        try:
            scope = self.client.get_allowed_scope(requested)
        except ScopeError as exc:  # malformed, or a ?query the server cannot hold a read to
            raise InvalidScopeError(said(str(exc))) from None
        if not scope:
            raise InvalidScopeError(said(f"none of the requested scopes is granted to "
                                         f"{self.client.get_client_id()!r}"))
        self.request.granted_scope = scope

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(scope=self.request.granted_scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER
