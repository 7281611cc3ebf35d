"""Token endpoint and access-token check costs.

Usage: python -m bench.token [--db URL ...] [--tokens 300] [--checks 200000]

Stores as in bench/stores.py: a fresh SQLite file and a throwaway PostgreSQL schema (when it
answers); `--db URL` options replace them.

In one process (Flask's test client, no HTTP and no gunicorn): tokens/s of POST /auth/token
with RS384 client assertions signed beforehand (the client's signing is not counted; the
server's assertion check, replay-cache insert, client lookup and token signing are), then the
cost of `TokenService.authenticate` per call: a token seen before (the cache hit every request
after the first pays), a token's first verification (ES256 signature check), and a cache hit
whose client status must be looked up again (AUTH_CLIENT_CACHE_SECONDS=0: one database read).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time
import uuid

from joserfc import jwt
from joserfc.jwk import RSAKey

from adapter.auth.keys import load_or_create
from adapter.auth.tokens import TokenService
from adapter.gateway.app import create_app
from adapter.store.clients import ClientRecord
from bench.stores import temporary_stores

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_URL = "http://localhost/auth/token"


def _assertion(key: RSAKey, name: str, now: int) -> str:
    claims = {"iss": name, "sub": name, "aud": TOKEN_URL, "exp": now + 240, "jti": uuid.uuid4().hex}
    return jwt.encode({"alg": "RS384", "kid": key.kid}, claims, key, algorithms=["RS384"])


def _per_call(fn: object, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", action="append", help="database URL (default: see above)")
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--checks", type=int, default=200_000)
    args = parser.parse_args(argv)
    with temporary_stores(args.db) as stores:
        for label, url in stores:
            with tempfile.TemporaryDirectory(prefix="bench-token-") as folder:
                print(f"{label}:")
                measure(url, pathlib.Path(folder), args.tokens, args.checks)


def measure(db: str, folder: pathlib.Path, count: int, checks: int) -> None:
    app = create_app({"DATABASE_URL": db, "AUTH": True, "EXPORT_DIR": str(folder / "exports"),
                      "FHIR_BASE_URL": TOKEN_URL.replace("/auth/token", "/fhir"),
                      "AUTH_KEY_FILE": str(folder / "auth-key.json")})
    store = app.extensions["fhir_store"]
    key = RSAKey.generate_key(2048, parameters={"kid": "bench-1"})
    name = f"bench-{uuid.uuid4().hex[:8]}"
    store.add_client(ClientRecord(name, "system/*.rs", json.dumps({"keys": [key.as_dict(private=False)]})))
    now = int(time.time())
    forms = [{"grant_type": "client_credentials", "scope": "system/*.rs",
              "client_assertion_type": ASSERTION_TYPE,
              "client_assertion": _assertion(key, name, now)} for _ in range(count)]
    client = app.test_client()
    issued = []
    start = time.perf_counter()
    for form in forms:
        answer = client.post("/auth/token", data=form)
        if answer.status_code != 200:
            sys.exit(f"token request failed: {answer.get_data(as_text=True)}")
        issued.append(answer.get_json()["access_token"])
    elapsed = time.perf_counter() - start
    print(f"  token endpoint: {count / elapsed:,.0f} tokens/s "
          f"({elapsed / count * 1000:.2f} ms per token, in process, one thread)")

    tokens: TokenService = app.extensions["fhir_auth"]
    header = f"Bearer {issued[0]}"
    tokens.authenticate(header)
    hit = _per_call(lambda: tokens.authenticate(header), checks)
    fresh = TokenService(load_or_create(folder / "auth-key.json"), store)
    headers = iter(f"Bearer {t}" for t in issued)
    first = _per_call(lambda: fresh.authenticate(next(headers)), len(issued))
    uncached = TokenService(load_or_create(folder / "auth-key.json"), store, client_cache_seconds=0)
    uncached.authenticate(header)
    status = _per_call(lambda: uncached.authenticate(header), min(checks, 2000))
    print(f"  authenticate, token seen before (cache hit): {hit * 1e6:.2f} µs per call")
    print(f"  authenticate, first verification (ES256):    {first * 1e6:.1f} µs per call")
    print(f"  authenticate, client status re-read each time (AUTH_CLIENT_CACHE_SECONDS=0): "
          f"{status * 1e6:.1f} µs per call")
    store.close()


if __name__ == "__main__":
    main()
