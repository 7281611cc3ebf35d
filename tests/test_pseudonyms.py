"""No served value lets anyone recover an MRN: none holds it, none is an unkeyed hash of an input
holding it, and every value that depends on it changes with the site's key (so without the key,
a search over candidate MRNs recovers nothing)."""
from __future__ import annotations

import hashlib
import pathlib
import re
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from adapter.fhir import jsonio
from adapter.mapping.engine import read_source, unique_key
from adapter.mapping.ingest import ingest
from adapter.mapping.sources import SourceRow
from adapter.mapping.spec import load_mapping
from adapter.store.schema import resources
from adapter.store.sql_store import SqlStore
from conftest import ROOT

SITES = {"site-a": "export.csv", "site-b": "export.ndjson", "site-c": "export.csv"}
KEY, OTHER_KEY = b"site key one: 0123456789abcdef", b"site key two: 0123456789abcdef"
RECORDED = "2026-01-01T00:00:00Z"
MRN = re.compile(r"MRN\d+")


def _stored(spec: Any, export: pathlib.Path, key: bytes, db: pathlib.Path) -> dict[tuple[str, str], dict[str, Any]]:
    store = SqlStore(f"sqlite:///{db}", check_references=False)  # no protocol loaded: no ResearchStudy
    try:
        ingest(spec, [export], store, key, recorded=RECORDED)
        with store.engine.connect() as conn:
            rows = conn.execute(select(resources.c.res_type, resources.c.res_id, resources.c.data)).all()
    finally:
        store.close()
    out = {}
    for rtype, rid, data in rows:
        resource = orjson.loads(data)
        resource.pop("meta", None)  # versionId, lastUpdated: the store's, not the mapping's
        out[(rtype, rid)] = resource
    return out


def _leaves(node: Any, path: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _leaves(value, f"{path}.{key}").items()}
    if isinstance(node, list):
        return {k: v for i, value in enumerate(node) for k, v in _leaves(value, f"{path}[{i}]").items()}
    return {path: node}


def _flat(stored: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return {f"{t}/{i}{path}": v for (t, i), r in stored.items() for path, v in _leaves(r).items()}


def _digests(data: bytes) -> set[str]:
    """Each unkeyed digest of `data`, cut to 16 hex digits (ids keep at least that many)."""
    return {hashlib.new(name, data).hexdigest()[:16] for name in ("sha256", "sha1", "md5", "blake2b", "sha512")}


@pytest.mark.parametrize("site", sorted(SITES))
@pytest.mark.slow
def test_no_served_value_is_a_function_of_the_mrn_without_the_key(site, tmp_path):
    spec = load_mapping(ROOT / "mappings" / "sites" / f"{site}.yaml")
    export = ROOT / "fixtures" / "sites" / site / SITES[site]
    encoding = spec.source["encoding"]
    text = export.read_text(encoding=encoding)
    mrns = set(MRN.findall(text))
    assert len(mrns) >= 15
    other = tmp_path / export.name  # the same export, every MRN another one
    other.write_text(MRN.sub(lambda m: m.group(0).replace("MRN", "MRX"), text), encoding=encoding)

    first = _stored(spec, export, KEY, tmp_path / "first.db")
    served = b"\n".join(orjson.dumps(r) for r in first.values()).decode()
    assert not [m for m in mrns if m in served]
    inputs = [m.encode() for m in mrns] + [f"{site}|{m}".encode() for m in mrns]
    for row in read_source(spec, export):
        if isinstance(row, SourceRow):
            inputs += [jsonio.dumps(row.values, sort_keys=True), "\x1f".join(unique_key(spec, row)).encode()]
    hashes = set().union(*(_digests(data) for data in inputs))
    assert not [h for h in hashes if h in served]

    leaves = _flat(first)
    by_mrn = _flat(_stored(spec, other, KEY, tmp_path / "other-mrns.db"))
    by_key = _flat(_stored(spec, export, OTHER_KEY, tmp_path / "other-key.db"))
    depends_on_mrn = {p for p in leaves.keys() | by_mrn.keys() if leaves.get(p) != by_mrn.get(p)}
    assert any(p.startswith("Patient/") for p in depends_on_mrn)  # the keyed MRN hash, at least
    unkeyed = sorted(p for p in depends_on_mrn if p in leaves and leaves[p] == by_key.get(p))
    assert not unkeyed, f"values that follow the MRN but not the key: {unkeyed[:5]}"
