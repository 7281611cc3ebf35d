"""Shared pieces of the authorisation tests: client keys, hand-made assertions, a JWKS server."""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC_KEY = ECKey.generate_key("P-384", parameters={"kid": "ec-1"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, not registered
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Clock:
    """A gateway's CLOCK (epoch seconds for issuing and expiring tokens) that a test moves
    forward, instead of sleeping until a token expires."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def public_jwks(*keys: Any) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def assertion(key: Any, client: str, aud: str, alg: str = "RS384", exp_in: int = 240,
              jti: str | None = None, header: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": client, "sub": client, "aud": aud, "iat": now, "exp": now + exp_in,
               "jti": jti or uuid.uuid4().hex, **claims}
    return jwt.encode({"alg": alg, "kid": key.kid, **(header or {})}, payload, key, algorithms=[alg])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(client: str, aud: str, alg: str, secret: bytes | None = None) -> str:
    """An assertion made by hand, as an attacker would: alg none, or HMAC keyed with `secret`."""
    now = int(time.time())
    head = _b64(json.dumps({"alg": alg, "kid": "rsa-1"}).encode())
    body = _b64(json.dumps({"iss": client, "sub": client, "aud": aud, "exp": now + 200,
                            "jti": uuid.uuid4().hex}).encode())
    signing = f"{head}.{body}".encode()
    signature = _b64(hmac.new(secret, signing, hashlib.sha256).digest()) if secret else ""
    return f"{head}.{body}.{signature}"


def token_form(client_assertion: str, scope: str = "system/Observation.rs") -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": client_assertion}


class JwksServer:
    """A client's JWKS URL on 127.0.0.1 that counts how often it is fetched."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks, self.fetches = jwks, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.fetches += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"


@contextmanager
def jwks_server(jwks: dict[str, Any]) -> Iterator[JwksServer]:
    served = JwksServer(jwks)
    thread = threading.Thread(target=served.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()
        thread.join(timeout=5)

