"""The multi-site topology for the exchange tests: each site and the centre with its own store,
keys and live gateway (real HTTP on 127.0.0.1), on SQLite or PostgreSQL."""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import pathlib
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from adapter.exchange.demo import DEMO_SITE_KEY, centre_keys, prepare_centre, prepare_site, register_centre
from adapter.exchange.policy import load_policy
from adapter.exchange.pull import PullOptions, PullReport, load_client_key, pull_site
from adapter.exchange.pull_record import PULL_SYSTEM
from adapter.exchange.view import POLICY_DIR, deidentifier
from adapter.fhir.search import parse_search
from adapter.fhir.sites import sites_of
from adapter.gateway.app import create_app
from adapter.private import open_private
from adapter.store import open_store
from conftest import reused_postgres_schema
from test_auth_token import Served

POLICY = load_policy(POLICY_DIR / "centre-v1.yaml")
DATA = ("Patient", "ResearchStudy", "ResearchSubject", "Condition", "Procedure", "Observation", "AdverseEvent",
        "BiologicallyDerivedProduct", "CarePlan", "Provenance", "Group", "Encounter")


@functools.cache
def _prepared(site: str) -> bytes:
    """An SQLite store of the site, prepared once, copied for each test."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "site.db"
        if site == "centre":
            prepare_centre(f"sqlite:///{path}")
        else:
            prepare_site(f"sqlite:///{path}", site)
        return path.read_bytes()


@functools.cache
def _prepared_resources(name: str) -> list[dict[str, Any]]:
    """Every current resource of the prepared SQLite store of `name`."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "site.db"
        path.write_bytes(_prepared(name))
        store = open_store(f"sqlite:///{path}")
        try:
            out = []
            for rtype in sorted({*DATA, "PlanDefinition", "ActivityDefinition", "CodeSystem", "ValueSet", "Measure",
                                 "Organization", "Location", "ConceptMap"}):
                for page in store.scan(parse_search(rtype, [("_count", "1000"), ("_total", "none")])):
                    out.extend(json.loads(e.data) for e in page)
            return out
        finally:
            store.close()


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    return {**resource, "meta": meta}


@dataclass
class Topology:
    kind: str
    folder: pathlib.Path
    urls: dict[str, str] = field(default_factory=dict)
    gateways: dict[str, Served] = field(default_factory=dict)
    key_file: pathlib.Path = pathlib.Path()
    public_jwks: pathlib.Path = pathlib.Path()

    @property
    def state(self) -> pathlib.Path:
        return self.folder / "centre-exchange"

    def fhir(self, name: str) -> str:
        return f"{self.gateways[name].root}/fhir"

    def options(self, site: str, **extra: Any) -> PullOptions:
        return PullOptions(site, extra.pop("base", self.fhir(site)), "centre", load_client_key(self.key_file), POLICY,
                           self.state, **extra)

    def pull(self, site: str, **extra: Any) -> PullReport:
        store = open_store(self.urls["centre"])
        try:
            return pull_site(store, self.options(site, **extra), say=lambda _: None)
        finally:
            store.close()

    def shared(self, site: str) -> dict[tuple[str, str], dict[str, Any]]:
        """What the policy lets out of the site's store now, computed at the site itself."""
        store = self.gateways[site].store
        policy = deidentifier(store, "centre-v1", POLICY_DIR, str(self.folder / site / "exchange-key"))
        out = {}
        for rtype in DATA:
            for page in store.scan(parse_search(rtype, [("_count", "1000"), ("_total", "none")])):
                for entry in page:
                    shared = policy.apply(json.loads(entry.data))
                    if shared is not None:
                        out[(rtype, shared["id"])] = _content(shared)
        return out

    def at_centre(self, site: str) -> dict[tuple[str, str], dict[str, Any]]:
        """The site's resources in the centre's store (its pull Provenances aside)."""
        store = open_store(self.urls["centre"])
        out = {}
        try:
            for rtype in DATA:
                for page in store.scan(parse_search(rtype, [("_count", "1000"), ("_total", "none")])):
                    for entry in page:
                        resource = json.loads(entry.data)
                        tags = {t.get("system") for t in (resource.get("meta") or {}).get("tag", [])}
                        if site in sites_of(resource) and PULL_SYSTEM not in tags:
                            out[(rtype, entry.id)] = _content(resource)
        finally:
            store.close()
        return out

    def token(self, gateway: str, client: str, scope: str = "system/*.rs") -> str:
        from authlib.integrations.requests_client import OAuth2Session
        from authlib.oauth2.rfc7523 import PrivateKeyJWT
        key = load_client_key(self.key_file) if client == "centre" else EHR_KEY
        token_url = self.gateways[gateway].token_url
        auth = PrivateKeyJWT(token_url, alg="ES384", headers={"kid": key.kid},
                             claims={"exp": int(time.time()) + 240})
        with OAuth2Session(client, key, token_endpoint_auth_method=auth, scope=scope) as session:
            return str(session.fetch_token(token_url)["access_token"])


def _ehr_key() -> Any:
    from joserfc.jwk import ECKey
    return ECKey.generate_key("P-384", parameters={"kid": "ehr-1"}, private=True)


EHR_KEY = _ehr_key()


@contextlib.contextmanager
def topology(kind: str, folder: pathlib.Path, sites: tuple[str, ...], base_urls: dict[str, str] | None = None,
             policy_dirs: dict[str, pathlib.Path] | None = None) -> Iterator[Topology]:
    """Each site and the centre: store, keys, gateway (auth on). The centre is registered at each
    site under the policy; `ehr` is a site's own client (no policy) at each site."""
    from adapter.store.clients import ClientRecord
    t = Topology(kind, folder)
    t.key_file, t.public_jwks = centre_keys(folder / "centre-keys")
    with contextlib.ExitStack() as stack:
        for name in (*sites, "centre"):
            if kind == "sqlite":
                path = folder / name / "adapter.db"
                path.parent.mkdir(parents=True, exist_ok=True)
                with open_private(path, "wb") as out:
                    out.write(_prepared(name))
                t.urls[name] = f"sqlite:///{path}"
            else:
                t.urls[name] = stack.enter_context(reused_postgres_schema())
                store = open_store(t.urls[name])
                try:  # the same resources as the SQLite store prepared once (mapping them again costs seconds)
                    store.load(_prepared_resources(name), batch_size=100_000)
                finally:
                    store.close()
            if name != "centre":
                register_centre(t.urls[name], t.public_jwks)
                store = open_store(t.urls[name])
                try:
                    store.add_client(ClientRecord("ehr", "system/*.cruds", json.dumps(
                        {"keys": [EHR_KEY.as_dict(private=False)]})))
                finally:
                    store.close()
            config = {"DATABASE_URL": t.urls[name], "AUTH": True, "REFERENTIAL_INTEGRITY": True,
                      "EXPORT_DIR": str(folder / name / "exports"),
                      "AUTH_KEY_FILE": str(folder / name / "auth-key.json"),
                      "EXCHANGE_KEY_FILE": str(folder / name / "exchange-key"),
                      "AUTH_CLIENT_CACHE_SECONDS": 0}
            if base_urls and name in base_urls:
                config["FHIR_BASE_URL"] = base_urls[name]
            if policy_dirs and name in policy_dirs:  # a site whose policy files differ from the centre's
                config["EXCHANGE_POLICY_DIR"] = str(policy_dirs[name])
            served = Served(create_app(config))
            stack.callback(served.close)
            t.gateways[name] = served
        yield t


class Throttle:
    """A reverse proxy on 127.0.0.1 in front of a gateway: counts requests by path and, while
    `slow`, sends export files in small pieces with pauses (to kill a pull mid-download)."""

    def __init__(self) -> None:
        self.target = ""
        self.slow = True
        self.hits: dict[str, int] = {}
        self.rewrite: tuple[bytes, bytes] | None = None  # (old, new) in the status answers (the manifest)
        self.hold_deletes = False  # while True, a DELETE (the end of a pull) waits, unanswered
        self.deletes_held = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _relay(self) -> None:
                outer.hits[self.path.split("?")[0]] = outer.hits.get(self.path.split("?")[0], 0) + 1
                if self.command == "DELETE" and outer.hold_deletes:
                    outer.deletes_held += 1
                    while outer.hold_deletes:
                        time.sleep(0.05)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "accept-encoding")}
                if outer.slow or outer.rewrite:  # plain bytes: a file comes in many pieces, a manifest as text
                    headers["Accept-Encoding"] = "identity"
                answer = requests.request(self.command, outer.target + self.path, headers=headers, data=body,
                                          stream=True, timeout=30, allow_redirects=False)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if outer.rewrite and key.lower() in ("content-length", "content-encoding"):
                        continue
                    if key.lower() not in ("transfer-encoding", "connection", "server", "date"):
                        self.send_header(key, value)
                self.end_headers()
                slow = outer.slow and "$export-file" in self.path
                if outer.rewrite and "$export-status" in self.path and answer.status_code == 200:
                    self.wfile.write(answer.content.replace(*outer.rewrite))
                    return
                try:
                    for chunk in answer.raw.stream(8192 if slow else 1 << 16, decode_content=False):
                        self.wfile.write(chunk)
                        if slow:
                            self.wfile.flush()
                            time.sleep(0.02)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_DELETE = _relay

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


__all__ = ["topology", "Topology", "Throttle", "POLICY", "DATA", "DEMO_SITE_KEY", "EHR_KEY"]
