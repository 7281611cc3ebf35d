"""What authorisation costs a read: read-by-id with a valid token beside the same read with auth
off, in one run.

Usage: python -m bench.auth [--db URL ...] [--duration 12] [--rounds 3] [--workers 2]

Two gateways on the same store (default: a fresh SQLite file, and PostgreSQL when it answers),
both with the audit off so that only authorisation differs: one with FHIR_ADAPTER_AUTH=on, read
with a token a registered client got from its token endpoint (a private_key_jwt assertion, as
a backend client sends), one with auth off. Loaded in interleaved rounds (wrk when installed,
else the Python generator). Printed: req/s, p50 and p99 of each and the on/off ratio.
Target: auth on >= 0.9x auth off.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
import time
import uuid

import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from bench.loadgen import Result
from bench.read import READ_PATH, _free_port, _gunicorn, _prepare_store, paired_load_arguments
from bench.stores import temporary_stores

CLIENT = "bench-centre"


def _register(db_url: str, key: RSAKey) -> None:
    from adapter.store.clients import ClientRecord
    from adapter.store.sql_store import SqlStore
    store = SqlStore(db_url)
    try:
        if store.get_client(CLIENT) is None:
            store.add_client(ClientRecord(CLIENT, "system/*.rs",
                                          json.dumps({"keys": [key.as_dict(private=False)]})))
    finally:
        store.close()


def _token(root: str, key: RSAKey) -> str:
    token_url = f"{root}/auth/token"
    now = int(time.time())
    assertion = jwt.encode({"alg": "RS384", "kid": key.kid},
                           {"iss": CLIENT, "sub": CLIENT, "aud": token_url, "exp": now + 240,
                            "jti": uuid.uuid4().hex}, key, algorithms=["RS384"])
    answer = requests.post(token_url, data={
        "grant_type": "client_credentials", "scope": "system/Observation.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion}, timeout=30)
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def main() -> None:
    args, load = paired_load_arguments(__doc__)
    key = RSAKey.generate_key(2048, parameters={"kid": "bench"})
    rows = []
    with temporary_stores(args.db) as stores, tempfile.TemporaryDirectory() as tmp:
        for label, url in stores:
            _prepare_store(url, args.observations)
            _register(url, key)
            common = {"FHIR_ADAPTER_DB": url, "FHIR_ADAPTER_AUDIT": "off"}
            modes = {"auth off": {**common, "FHIR_ADAPTER_AUTH": "off"},
                     "auth on": {**common, "FHIR_ADAPTER_AUTH": "on",
                                 "FHIR_ADAPTER_AUTH_KEY": str(pathlib.Path(tmp) / f"{label}-key.json")}}
            runs: dict[str, list[Result]] = {mode: [] for mode in modes}
            with contextlib.ExitStack() as stack:
                servers = {mode: stack.enter_context(_gunicorn(
                    "adapter.gateway.app:create_app()", _free_port(), env, pathlib.Path(tmp), args.workers))
                    for mode, env in modes.items()}
                headers = {"auth off": {}, "auth on": {"Authorization": f"Bearer {_token(servers['auth on'], key)}"}}
                for _ in range(args.rounds):
                    for mode, base in servers.items():
                        runs[mode].append(load(base + READ_PATH, args.duration / args.rounds,
                                               args.connections, headers[mode]))
            rows.append((label, {mode: sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for mode, rs in runs.items()}))
    print(f"load generator: {load.__name__.replace('_load', '')}, {args.connections} connections, "
          f"{args.workers} gunicorn sync workers, median of {args.rounds} interleaved rounds of "
          f"{args.duration / args.rounds:.0f} s; {os.cpu_count()} cores; read-by-id {READ_PATH}; audit off")
    print(f"{'store':<12}{'mode':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for label, median in rows:
        for mode, r in median.items():
            print(f"{label:<12}{mode:<10}{r.rps:>9.0f}{r.p50:>9.2f}{r.p99:>9.2f}{r.errors:>8}")
        on, off = median["auth on"], median["auth off"]
        print(f"{label}: auth on / off = {on.rps / off.rps:.2f}x req/s, p50 {on.p50 / off.p50:.2f}x (target >= 0.9x)")


if __name__ == "__main__":
    main()
