"""Signing a person in through the hospital's OpenID Connect provider (Keycloak, Entra ID, ...):
the authorization code flow with PKCE, by Authlib's client, for the pages (adapter/pages/sign_in.py).

https://openid.net/specs/openid-connect-core-1_0.html#CodeFlowAuth. The provider is found by
its discovery document (OpenID Connect Discovery 1.0, section 4), whose `issuer` must be the one
configured, word for word (section 4.3: otherwise a provider could speak for another). Every
call to the provider is bounded as a whole, not per socket read (a provider dripping a byte at
a time would otherwise hold the worker): the request waits `timeout` seconds for the whole
answer (`_bounded`), whose body is read as it comes, with a cap of 1 MiB. A provider that is down is a clear page within that bound, not a hung worker. The
ID token is checked here, each check with its own sentence: signature (the provider's JWKS,
fetched again once for a key id not seen), issuer, audience, `azp` when present, nonce, expiry,
issued-at (required), not-before.

Everything that goes wrong is a SignInFailed: its message is for the person at the browser.
"""
from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import requests
from authlib.common.security import is_secure_transport
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from adapter.auth.roles import RoleMap
from adapter.errors import AdapterError

__all__ = ["OidcSettings", "OidcClient", "SignInFailed", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 5.0  # seconds: each call to the provider
_DISCOVERY_SECONDS = 3600  # the discovery document, kept per process
_LEEWAY = 60  # seconds of clock difference allowed on exp and iat
_ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]  # public-key signatures only: never `none` or HMAC
_MAX_ANSWER = 1 << 20  # bytes of one answer of the provider (a discovery document or a JWKS is a few kB)


def _read_bounded(answer: requests.Response, deadline: float) -> None:
    """The answer's body, read as it arrives (read1: whatever the socket has, not a full
    chunk), until the deadline or the cap; kept as the response's content."""
    body = bytearray()
    try:
        while chunk := answer.raw.read1(65536, decode_content=True):
            body += chunk
            if len(body) > _MAX_ANSWER:
                raise requests.RequestException(f"an answer of more than {_MAX_ANSWER} bytes")
            if time.monotonic() > deadline:
                raise requests.Timeout("the answer did not end in time")
    finally:
        answer.close()
    answer._content, answer._content_consumed = bytes(body), True  # what .json() and Authlib read


_CALLS: tuple[int, ThreadPoolExecutor] | None = None  # (pid, executor): a forked worker makes its own


def _bounded(call: Callable[[], requests.Response], bound: float) -> requests.Response:
    """`call()` (one request to the provider, its body read by _read_bounded) within `bound`
    seconds in all: the status line and headers are read per socket read by http.client, so the
    call runs on one of four threads and the request's own thread stops waiting at the bound.
    A call still dripping then ends at its own read deadline; one not started is cancelled."""
    global _CALLS
    if _CALLS is None or _CALLS[0] != os.getpid():
        _CALLS = (os.getpid(), ThreadPoolExecutor(max_workers=4, thread_name_prefix="oidc-call"))
    future = _CALLS[1].submit(call)
    try:
        return future.result(timeout=bound)
    except FutureTimeout:
        future.cancel()
        raise requests.Timeout(f"no whole answer within {bound:g} s") from None


class _BoundedSession(OAuth2Session):
    """Authlib's client whose every call (the token request) is bounded as a whole."""

    bound: float = DEFAULT_TIMEOUT

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        deadline = time.monotonic() + self.bound

        def call() -> requests.Response:
            answer = super(_BoundedSession, self).request(
                method, url, *args, **{**kwargs, "stream": True, "timeout": self.bound})
            _read_bounded(answer, deadline)
            return answer
        return _bounded(call, self.bound)


class SignInFailed(AdapterError):
    """A sign-in that cannot go on; `str()` says why, for the page. 400: the request or the
    provider's answer was wrong; 503: the provider could not be reached."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    roles: RoleMap
    scope: str = "openid profile"
    timeout: float = DEFAULT_TIMEOUT


class OidcClient:
    """One provider, one registered client. `clock` (epoch seconds) decides expiry: tests move it."""

    def __init__(self, settings: OidcSettings, clock: Callable[[], float] = time.time) -> None:
        if not is_secure_transport(settings.issuer):
            raise ValueError(f"the OpenID Connect issuer {settings.issuer!r} must be https (http on loopback only)")
        self.settings, self.clock = settings, clock
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._keys: KeySet | None = None
        self._lock = threading.Lock()

    def _get(self, url: str, what: str) -> dict[str, Any]:
        try:
            deadline, bound = time.monotonic() + self.settings.timeout, self.settings.timeout

            def call() -> requests.Response:
                got = requests.get(url, timeout=bound, headers={"Accept": "application/json"}, stream=True)
                _read_bounded(got, deadline)
                return got
            answer = _bounded(call, bound)
            answer.raise_for_status()
            data = answer.json()
        except requests.Timeout:
            raise SignInFailed(f"the sign-in service ({self.settings.issuer}) did not answer within "
                               f"{self.settings.timeout:g} s ({what}); try again later", 503) from None
        except (requests.RequestException, ValueError) as error:
            raise SignInFailed(f"the sign-in service ({self.settings.issuer}) could not be reached or gave no "
                               f"usable answer ({what}: {type(error).__name__}); try again later", 503) from None
        if not isinstance(data, dict):
            raise SignInFailed(f"the sign-in service's {what} is not a JSON object", 503)
        return data

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (kept an hour; a failure is not kept)."""
        with self._lock:
            kept = self._metadata
        if kept is not None and self.clock() - kept[0] < _DISCOVERY_SECONDS:
            return kept[1]
        issuer = self.settings.issuer
        data = self._get(issuer.rstrip("/") + "/.well-known/openid-configuration", "its discovery document")
        if data.get("issuer") != issuer:
            raise SignInFailed(f"the provider at {issuer} names another issuer ({data.get('issuer')!r}) in its "
                               "discovery document; refused (OpenID Connect Discovery 4.3)", 503)
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(data.get(key), str) or not is_secure_transport(data[key]):
                raise SignInFailed(f"the provider's discovery document has no usable {key}", 503)
        with self._lock:
            self._metadata = (self.clock(), data)
        return data

    def _session(self, redirect_uri: str) -> OAuth2Session:
        session = _BoundedSession(self.settings.client_id, self.settings.client_secret, scope=self.settings.scope,
                                  redirect_uri=redirect_uri, code_challenge_method="S256",
                                  default_timeout=self.settings.timeout)
        session.bound = self.settings.timeout
        return session

    def begin(self, redirect_uri: str) -> tuple[str, dict[str, str]]:
        """The provider's authorization URL to send the browser to, and what the callback needs
        (state, nonce, PKCE verifier): kept server-side, never in the browser."""
        endpoint = self.metadata()["authorization_endpoint"]
        pending = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
                   "verifier": secrets.token_urlsafe(48), "redirect_uri": redirect_uri}
        url, _ = self._session(redirect_uri).create_authorization_url(
            endpoint, state=pending["state"], code_verifier=pending["verifier"], nonce=pending["nonce"])
        return url, pending

    def finish(self, pending: Mapping[str, str], answer: Mapping[str, str]) -> dict[str, Any]:
        """The verified ID token's claims, from the provider's answer at the callback (its query)."""
        if answer.get("state") != pending["state"]:
            raise SignInFailed("the sign-in's state does not match the one this browser started with (a "
                               "forged or mixed-up answer); nothing was signed in")
        if answer.get("error"):
            raise SignInFailed(f"the sign-in service did not sign you in: {answer['error']}"
                               + (f" ({answer['error_description']})" if answer.get("error_description") else ""))
        # RFC 9207: which provider answered; an answer from another one is a mix-up attack, and
        # a provider that says it always names itself (section 3) must have (section 2.4).
        metadata = self.metadata()
        if answer.get("iss") is not None and answer.get("iss") != self.settings.issuer:
            raise SignInFailed(f"the answer came from another provider ({answer.get('iss')}), not "
                               f"{self.settings.issuer}; refused")
        if answer.get("iss") is None and metadata.get("authorization_response_iss_parameter_supported") is True:
            raise SignInFailed("the answer does not name its provider (iss), which this provider always does "
                               "(RFC 9207); refused")
        code = answer.get("code")
        if not code:
            raise SignInFailed("the sign-in service's answer has no code")
        try:
            token = self._session(pending["redirect_uri"]).fetch_token(
                metadata["token_endpoint"], grant_type="authorization_code", code=code,
                code_verifier=pending["verifier"])
        except OAuthError as error:
            raise SignInFailed(f"the sign-in service refused the code ({error.error}: {error.description or ''}): "
                               "it was used already, has expired, or was not issued for this sign-in") from None
        except requests.Timeout:
            raise SignInFailed(f"the sign-in service did not answer within {self.settings.timeout:g} s "
                               "(its token endpoint); try again later", 503) from None
        except requests.RequestException as error:
            raise SignInFailed(f"the sign-in service could not be reached ({type(error).__name__}); "
                               "try again later", 503) from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed("the sign-in service sent no ID token (is `openid` among the scopes?)")
        return self.verify(id_token, pending["nonce"])

    def _key_set(self, refresh: bool) -> KeySet:
        with self._lock:
            keys = self._keys
        if keys is None or refresh:
            data = self._get(self.metadata()["jwks_uri"], "its signing keys")
            try:
                keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError) as error:
                raise SignInFailed(f"the sign-in service's signing keys cannot be read ({error})", 503) from None
            with self._lock:
                self._keys = keys
        return keys

    def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of an ID token meant for this client in this sign-in, or SignInFailed."""
        claims: dict[str, Any] | None = None
        for refresh in (False, True):  # a key id not seen: the provider may have rotated its keys
            try:
                claims = dict(jwt.decode(id_token, self._key_set(refresh), algorithms=_ALGORITHMS).claims)
                break
            except (JoseError, ValueError) as error:
                if refresh:
                    raise SignInFailed(f"the ID token's signature is not the sign-in service's ({error})") from None
        assert claims is not None
        issuer, client = self.settings.issuer, self.settings.client_id
        if claims.get("iss") != issuer:
            raise SignInFailed(f"the ID token was issued by {claims.get('iss')!r}, not by {issuer}; refused")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if client not in audiences or ((len(audiences) > 1 or "azp" in claims) and claims.get("azp") != client):
            raise SignInFailed(f"the ID token is meant for {audience!r}"
                               + (f" (azp {claims.get('azp')!r})" if "azp" in claims else "")
                               + f", not for this server ({client}); refused")
        # Bytes: compare_digest refuses str holding anything but ASCII (a nonce the browser edited).
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(
                claims["nonce"].encode("utf-8", "surrogatepass"), nonce.encode("utf-8")):
            raise SignInFailed("the ID token's nonce is not this sign-in's (a replayed or mixed-up token); refused")
        now = self.clock()
        if not _number(claims.get("exp")) or claims["exp"] + _LEEWAY < now:
            raise SignInFailed("the ID token has expired; sign in again")
        if not _number(claims.get("iat")):
            raise SignInFailed("the ID token does not say when it was issued (iat, required by OpenID Connect)")
        if claims["iat"] - _LEEWAY > now:
            raise SignInFailed("the ID token was issued in the future (a clock is wrong); refused")
        if "nbf" in claims and (not _number(claims["nbf"]) or claims["nbf"] - _LEEWAY > now):
            raise SignInFailed("the ID token is not valid yet (nbf); refused")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise SignInFailed("the ID token names no subject (sub)")
        return claims


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
