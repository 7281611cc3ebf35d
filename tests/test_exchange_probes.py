"""Probes of a site's gateway by the coordinating centre's client (exchange policy centre-v1):
what the policy withholds (record numbers such as A0001, stored ids such as site-a-A0001, full
birth dates, MRN hashes, narrative) must not come out through any interaction. One SQLite
topology (site A and the centre, live gateways, SMART auth) for the whole module."""
from __future__ import annotations

import base64
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adapter.fhir.search import encode_cursor
from exchange_helpers import Topology, topology

WITHHELD = re.compile(r"site-a-[AB]\d{4}|\b[AB]\d{4}\b|MRN")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Topology, str, dict[str, str]]]:
    folder: pathlib.Path = tmp_path_factory.mktemp("probes")
    with topology("sqlite", folder, ("site-a",)) as t:
        headers = {"Authorization": f"Bearer {t.token('site-a', 'centre')}", "Accept": "application/fhir+json"}
        yield t, t.fhir("site-a"), headers


def _cursors(bundle: dict[str, Any]) -> list[str]:
    """The decoded _cursor of each link of a Bundle."""
    out = []
    for link in bundle.get("link", []):
        found = re.search(r"_cursor=([^&]+)", link["url"])
        if found:
            raw = requests.utils.unquote(found.group(1))
            out.append(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode())
    return out


def _walk(url: str, headers: dict[str, str]) -> tuple[list[str], list[str]]:
    """Every entry's id following `next` links, and every cursor seen on the way."""
    ids: list[str] = []
    cursors: list[str] = []
    while url:
        answer = requests.get(url, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        bundle = answer.json()
        ids += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])]
        cursors += _cursors(bundle)
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), "")
    return ids, cursors


def test_paging_cursors_carry_no_stored_id(site):
    t, base, headers = site
    shared = {f"{rtype}/{rid}" for rtype, rid in t.shared("site-a") if rtype in ("Patient", "Group", "ResearchStudy")}
    ids, cursors = _walk(f"{base}/Patient?_count=3", headers)
    assert sorted(ids) == sorted(i for i in shared if i.startswith("Patient/")) and len(ids) == 20
    assert cursors and not [c for c in cursors if WITHHELD.search(c)], cursors[:3]
    # across types too: a page's position is the sealed cursor of its type's search, not an entry's id
    ids, cursors = _walk(f"{base}?_type=Group,Patient,ResearchStudy&_count=7", headers)
    assert sorted(ids) == sorted(shared)
    assert cursors and not [c for c in cursors if WITHHELD.search(c) or "site-a-" in c], cursors[:3]
    # and backwards, by `previous` links, the same
    last = requests.get(f"{base}?_type=Group,Patient,ResearchStudy&_count=7", headers=headers, timeout=30).json()
    while any(link["relation"] == "next" for link in last["link"]):
        url = next(link["url"] for link in last["link"] if link["relation"] == "next")
        last = requests.get(url, headers=headers, timeout=30).json()
    back = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in last.get("entry", [])]
    while any(link["relation"] == "previous" for link in last["link"]):
        url = next(link["url"] for link in last["link"] if link["relation"] == "previous")
        last = requests.get(url, headers=headers, timeout=30).json()
        back = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in last.get("entry", [])] + back
    assert sorted(back) == sorted(shared) and len(back) == len(set(back))


def test_a_made_up_cursor_places_no_stored_id(site):
    """A cursor naming a stored id would answer 'which shared Patient follows site-a-A0005?'."""
    _, base, headers = site
    forged = encode_cursor(("site-a-A0005",))
    for query in (f"Patient?_cursor={forged}", f"?_type=Patient&_cursor={encode_cursor(('Patient', 'site-a-A0005'))}",
                  f"?_type=Patient&_cursor={encode_cursor(('Patient', 'site-a-A0005'), True)}"):
        answer = requests.get(f"{base}/{query}", headers=headers, timeout=30)
        assert answer.status_code == 400 and answer.json()["resourceType"] == "OperationOutcome", query
