"""The multi-site topology on one machine: two sites and the coordinating centre, each with its
own store, keys and gateway on a loopback port (`fhir-adapter exchange demo`), and the steps it
is made of, which the tests use too.

A site: the protocol's definitions, its synthetic export through its mapping, its cohort Group
and ResearchStudy, and the centre registered as a client under the exchange policy. The centre:
the protocol's definitions (what the sites' data refers to) and a key pair of its own.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any

from joserfc.jwk import ECKey

from adapter.demo_data import DEMO_KEY as DEMO_SITE_KEY, PROTOCOL_SPEC, ROOT
from adapter.exchange.cohorts import build_cohorts
from adapter.private import open_private, private_dir
from adapter.protocol.spec import load_spec
from adapter.study.load import store_definitions
from adapter.store import open_store
from adapter.store.clients import ClientRecord, ClientRegistry

__all__ = ["ROOT", "centre_keys", "prepare_site", "prepare_centre", "register_centre", "DEMO_SITE_KEY"]



def centre_keys(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A new ES384 key pair for the centre: (private JWK file, 0600; public JWK Set file)."""
    private_dir(folder)
    key = ECKey.generate_key("P-384", parameters={"kid": "centre-1"}, private=True)
    private, public = folder / "centre-private.jwk.json", folder / "centre-public.jwks.json"
    with open_private(private) as out:
        out.write(json.dumps(key.as_dict(private=True)))
    public.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    return private, public


def prepare_centre(db: str) -> None:
    store = open_store(db)
    try:
        store_definitions(store, load_spec(PROTOCOL_SPEC))
    finally:
        store.close()


def prepare_site(db: str, site: str, key: bytes = DEMO_SITE_KEY) -> dict[str, Any]:
    """The protocol, the site's fixture export through its mapping, its cohort and study."""
    from adapter.mapping.ingest import ingest
    from adapter.mapping.spec import load_mapping
    spec = load_mapping(ROOT / "mappings" / "sites" / f"{site}.yaml")
    store = open_store(db)
    try:
        store_definitions(store, load_spec(PROTOCOL_SPEC))
        report = ingest(spec, sorted((ROOT / "fixtures" / "sites" / site).glob("export.*")), store, key, workers=1)
        build_cohorts(store, spec.catalogue.base, [(site, str(spec.data["mapping"].get("title", site)))])
    finally:
        store.close()
    return {"site": site, "summary": report.summary()}


def register_centre(db: str, public_jwks: pathlib.Path, policy: str = "centre-v1", name: str = "centre",
                    scope: str = "system/*.rs") -> None:
    """The centre as a client of a site: read-only, everything through the exchange policy."""
    store = open_store(db)
    try:
        assert isinstance(store, ClientRegistry)
        store.add_client(ClientRecord(name, scope, public_jwks.read_text(), None, None, policy=policy))
    finally:
        store.close()
