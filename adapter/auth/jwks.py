"""Client public keys: a registered JWK Set, inline or fetched from the client's JWKS URL.

Fetched sets are cached per URL. An assertion whose `kid` the cached set lacks makes one
re-fetch (the client rotated its keys), but no more than one per `refetch_seconds` per URL, so
that assertions with made-up kids cannot turn the server into a flood of requests to that URL.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import requests
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from adapter.errors import AdapterError
from adapter.store.clients import ClientRecord

__all__ = ["JwksCache", "KeyNotFound", "parse_jwks", "ALGORITHM_KEYS"]

MAX_JWKS_BYTES = 64 * 1024
FETCH_TIMEOUT = 5.0  # seconds, connect and read each
# The assertion algorithms SMART Backend Services names, and the keys that may sign with them.
ALGORITHM_KEYS: dict[str, tuple[type[Key], str | None]] = {"RS384": (RSAKey, None), "ES384": (ECKey, "P-384")}


class KeyNotFound(AdapterError):
    """No key of the client's set fits the assertion (unknown kid, wrong type, fetch failed)."""


def parse_jwks(text: str | bytes, require_kid: bool = False) -> KeySet:
    """A JWK Set of public keys; ValueError for anything else, private key material included.
    (joserfc gives a key without `kid` its thumbprint; `require_kid` refuses such keys.)"""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("the JWKS is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise ValueError('the JWKS must be a JSON object {"keys": [...]} with at least one key')
    if require_kid and not all(isinstance(k, dict) and k.get("kid") for k in data["keys"]):
        raise ValueError("every key needs a kid (the assertion's kid names the key that signed it)")
    try:
        keys = KeySet.import_key_set(data)  # type: ignore[arg-type]  # checked just above
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"the JWKS holds a key that does not import: {exc}") from None
    for key in keys:
        if key.is_private or key.key_type == "oct":
            raise ValueError(f"the JWKS holds private key material (key {key.kid or '?'}): "
                             "register only the public keys")
    return keys


class JwksCache:
    def __init__(self, ttl: float = 300.0, refetch_seconds: float = 10.0) -> None:
        self.ttl, self.refetch_seconds = ttl, refetch_seconds
        self._sets: dict[str, tuple[float, KeySet]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.fetches = 0  # for the tests and the benchmark

    def key_for(self, client: ClientRecord, header: dict[str, Any]) -> Key:
        """The client's key that may verify an assertion with this JWS header."""
        alg, kid, jku = header.get("alg"), header.get("kid"), header.get("jku")
        if alg not in ALGORITHM_KEYS:
            raise KeyNotFound(f"algorithm {alg!r} is not allowed: use RS384 or ES384")
        if jku is not None and jku != client.jwks_url:
            raise KeyNotFound("the assertion's jku is not the client's registered JWKS URL")
        if client.jwks is not None:
            key = _pick(parse_jwks(client.jwks), alg, kid)
        elif client.jwks_url is not None:
            key = _pick(self._fetched(client.jwks_url, False), alg, kid)
            if key is None and kid is not None and self._may_refetch(client.jwks_url):
                key = _pick(self._fetched(client.jwks_url, True), alg, kid)
        else:
            raise KeyNotFound("the client has no registered keys")
        if key is None:
            raise KeyNotFound(f"no {alg} key with kid {kid!r} in the client's JWKS" if kid else
                              f"no single {alg} key in the client's JWKS: send a kid")
        return key

    def _may_refetch(self, url: str) -> bool:
        fetched = self._sets.get(url)
        return fetched is None or time.monotonic() - fetched[0] >= self.refetch_seconds

    def _fetched(self, url: str, force: bool) -> KeySet:
        with self._locks_lock:
            lock = self._locks.setdefault(url, threading.Lock())
        started = time.monotonic()
        with lock:  # one fetch per URL at a time; a slow URL holds up no other client's
            fetched = self._sets.get(url)
            if fetched and (fetched[0] >= started  # another thread fetched it while we waited
                            or (not force and started - fetched[0] < self.ttl)):
                return fetched[1]
            keys = _fetch(url)
            self.fetches += 1
            self._sets[url] = (time.monotonic(), keys)
            return keys


def _fetch(url: str) -> KeySet:
    try:
        with requests.get(url, timeout=FETCH_TIMEOUT, stream=True, allow_redirects=False,
                          headers={"Accept": "application/json"}) as answer:
            answer.raise_for_status()
            body = answer.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise KeyNotFound(f"the client's JWKS URL could not be fetched: {exc}") from None
    if len(body) > MAX_JWKS_BYTES:
        raise KeyNotFound(f"the client's JWKS is larger than {MAX_JWKS_BYTES} bytes")
    try:
        return parse_jwks(body)
    except ValueError as exc:
        raise KeyNotFound(f"the client's JWKS URL: {exc}") from None


def _pick(keys: KeySet, alg: str, kid: str | None) -> Key | None:
    kind, curve = ALGORITHM_KEYS[alg]
    fitting = [k for k in keys if isinstance(k, kind) and (curve is None or k.get("crv") == curve)
               and k.get("alg") in (None, alg) and k.get("use") in (None, "sig")]
    if kid is not None:
        fitting = [k for k in fitting if k.kid == kid]
    return fitting[0] if len(fitting) == 1 else None
