"""Probes of a site's gateway by the coordinating centre's client (exchange policy centre-v1):
what the policy withholds (record numbers such as A0001, stored ids such as site-a-A0001, full
birth dates, MRN hashes, narrative) must not come out through any interaction. One SQLite
topology (site A and the centre, live gateways, SMART auth) for the whole module."""
from __future__ import annotations

import base64
import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adapter.fhir.search import encode_cursor, parse_search
from exchange_helpers import Topology, topology

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
    assert cursors and not [c for c in cursors if "site-a-" in c], cursors[:3]  # sealed: random base64
    for order in ("_lastUpdated", "-_lastUpdated"):  # sort values sealed with the id: paging still works
        ids, cursors = _walk(f"{base}/Patient?_count=3&_sort={order}", headers)
        assert sorted(ids) == sorted(i for i in shared if i.startswith("Patient/"))
        assert cursors and not [c for c in cursors if "site-a-" in c or re.search(r"\d{4}-\d\d-\d\dT", c)], cursors[:3]
    # across types too: a page's position is the sealed cursor of its type's search, not an entry's id
    ids, cursors = _walk(f"{base}?_type=Group,Patient,ResearchStudy&_count=7", headers)
    assert sorted(ids) == sorted(shared)
    assert cursors and not [c for c in cursors if "site-a-" in c], cursors[:3]
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
    # nor does a sealed cursor of another type's search: an Observation's stored id (site-a-A0007-...)
    # placed among the Patients would tell which child comes after it
    bundle = requests.get(f"{base}/Observation?_count=5", headers=headers, timeout=30).json()
    following = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    cursor = re.search(r"_cursor=([^&]+)", following).group(1)
    for query in (f"Patient?_cursor={cursor}", f"?_type=Patient&_cursor={encode_cursor(('Patient',) + tuple(json.loads(base64.urlsafe_b64decode(requests.utils.unquote(cursor) + '==='))))}"):
        answer = requests.get(f"{base}/{query}", headers=headers, timeout=30)
        assert answer.status_code == 400, (query, answer.text[:200])


def _stored_to_shared(t: Topology, rtype: str) -> dict[str, str]:
    from adapter.exchange.view import POLICY_DIR, deidentifier
    store = t.gateways["site-a"].store
    policy = deidentifier(store, "centre-v1", POLICY_DIR, str(t.folder / "site-a" / "exchange-key"))
    return {stored: policy.new_id("site-a", rtype, stored) for stored in
            (e.id for page in store.scan(parse_search(rtype, [("_count", "1000"), ("_total", "none")])) for e in page)}


def test_the_order_of_what_is_shared_does_not_give_the_record_numbers(site):
    """Shared ids are keyed hashes; listed in stored-id order (site-a-A0001, A0002, ...) the n-th
    is the n-th record number, and the hash is worth nothing."""
    t, base, headers = site
    in_record_order = [shared for _, shared in sorted(_stored_to_shared(t, "Patient").items())]
    searched, _ = _walk(f"{base}/Patient?_count=100", headers)
    assert [i.split("/")[1] for i in searched] == sorted(in_record_order) != in_record_order
    group = requests.get(f"{base}/Group?_count=1", headers=headers, timeout=30).json()["entry"][0]["resource"]
    members = [m["entity"]["reference"].split("/")[1] for m in group["member"]]
    assert members == sorted(in_record_order)
    included = requests.get(f"{base}/Group?_include=Group:member", headers=headers, timeout=30).json()["entry"]
    assert [e["resource"]["id"] for e in included if e["resource"]["resourceType"] == "Patient"] == sorted(in_record_order)
    kick = requests.get(f"{base}/$export?_type=Patient", headers={**headers, "Prefer": "respond-async"}, timeout=30)
    from test_authorisation import export_manifest
    http = requests.Session()
    http.headers.update(headers)
    manifest = export_manifest(http, kick.headers["Content-Location"])
    lines = requests.get(manifest["output"][0]["url"], headers=headers, timeout=30).text.splitlines()
    assert [json.loads(line)["id"] for line in lines] == sorted(in_record_order)


def test_equal_last_updated_does_not_fall_back_on_record_order(site):
    """Most resources share a _lastUpdated (one ingest batch): sorted by it, the store breaks
    ties by stored id, which would give the record numbers again."""
    t, base, headers = site
    shared_of = _stored_to_shared(t, "Patient")
    in_record_order = [shared for _, shared in sorted(shared_of.items())]
    store = t.gateways["site-a"].store
    updated = {shared_of[e.id]: e.last_updated
               for page in store.scan(parse_search("Patient", [("_count", "100"), ("_total", "none")])) for e in page}
    for order in ("_lastUpdated", "-_lastUpdated"):
        bundle = requests.get(f"{base}/Patient?_count=100&_sort={order}", headers=headers, timeout=30).json()
        got = [(updated[e["resource"]["id"]], e["resource"]["id"]) for e in bundle["entry"]]
        assert len(set(updated.values())) < len(got)  # ties there are
        assert got == sorted(got, reverse=order.startswith("-")) and [i for _, i in got] != in_record_order


def test_history_is_not_in_record_order(site):
    """History is in write order, and a site's ingest writes its children in record order."""
    t, base, headers = site
    in_record_order = [shared for _, shared in sorted(_stored_to_shared(t, "Patient").items())]
    history = requests.get(f"{base}/Patient/_history?_count=100", headers=headers, timeout=30).json()
    got = [e["resource"]["id"] for e in history["entry"]]
    assert sorted(got) == sorted(in_record_order)
    assert got != in_record_order and got != in_record_order[::-1]


@pytest.mark.xfail(strict=True, reason="pages are cut in stored-id order (adapter/store/sql_pages.py): "
                   "a page is sorted, the sequence of small pages is not; not fixed here")
def test_small_pages_do_not_give_the_record_numbers(site):
    t, base, headers = site
    in_record_order = [shared for _, shared in sorted(_stored_to_shared(t, "Patient").items())]
    searched, _ = _walk(f"{base}/Patient?_count=1", headers)
    assert [i.split("/")[1] for i in searched] != in_record_order


def _shared_observation(t: Topology) -> dict[str, Any]:
    return next(r for (rtype, _), r in t.shared("site-a").items() if rtype == "Observation")


@pytest.mark.parametrize("spelling", [
    b'"reference": "Patient/site-b-0123456789abcdef0123456789abcdef"',  # JSON whitespace
    b'"reference":"Patient\\/site-b-0123456789abcdef0123456789abcdef"',  # an escaped solidus
    b'"reference":"https://centre.example.org/fhir/Patient/site-b-0123456789abcdef0123456789abcdef"'])
def test_a_site_cannot_point_into_another_sites_data(site, tmp_path, spelling):
    from adapter.exchange.arrival import Arrival, Refused
    from exchange_helpers import POLICY
    t, _, _ = site
    observation = _shared_observation(t)
    line = json.dumps(observation, separators=(",", ":")).encode()
    line = re.sub(rb'"subject":\{"reference":"[^"]+"', b'"subject":{' + spelling, line)
    assert b"site-b-" in line and json.loads(line)["subject"]
    (tmp_path / "Observation.ndjson").write_bytes(line + b"\n")
    with pytest.raises(Refused):
        Arrival("site-a", POLICY, tmp_path / "quarantine").verify(tmp_path / "Observation.ndjson", "Observation")


@pytest.mark.slow
def test_a_site_cannot_set_another_sites_since(site):
    """Site A's store holds a Provenance tagged as the centre's record of a pull of site B, made in
    2999; the policy lets it out (meta.tag is kept) and the centre loads it: `--since auto` for
    site B would then ask for nothing before 2999."""
    from adapter.exchange.pull_record import PULL_SYSTEM, last_success
    from adapter.store import open_store
    t, _, _ = site
    store = t.gateways["site-a"].store
    template = json.loads(next(e.data for e in store.search(parse_search("Provenance", [("_count", "1")])).entries))
    store.update({**template, "id": "site-a-fake-pull", "occurredDateTime": "2999-01-01T00:00:00Z",
                  "meta": {**template["meta"], "tag": [{"system": PULL_SYSTEM, "code": "site-b"}]}})
    try:
        report = t.pull("site-a")  # the Provenance file is refused whole, the rest loads
        assert not report.ok and any("-Provenance.ndjson" in r.split(":")[0] for r in report.refused)
        centre = open_store(t.urls["centre"])
        try:
            assert last_success(centre, "site-b") is None
        finally:
            centre.close()
    finally:
        store.delete("Provenance", "site-a-fake-pull")


def test_what_is_not_shared_is_not_named_by_its_stored_id(site):
    """A Group found by its shared id whose first version was not shared (no site label): the
    404 of that version names it as the client did, not by the stored id."""
    t, base, headers = site
    store = t.gateways["site-a"].store
    group = {"resourceType": "Group", "id": "site-a-A0099-group", "type": "person", "actual": True}
    store.update(group)
    try:
        label = {"system": "http://ucmsc-cp.example.org/fhir/CodeSystem/study-site", "code": "site-a"}
        store.update({**group, "meta": {"security": [label]}})
        shared = _stored_to_shared(t, "Group")["site-a-A0099-group"]
        assert requests.get(f"{base}/Group/{shared}", headers=headers, timeout=30).status_code == 200
        answer = requests.get(f"{base}/Group/{shared}/_history/1", headers=headers, timeout=30)
        assert answer.status_code == 404 and "A0099" not in answer.text, answer.text
    finally:
        store.delete("Group", "site-a-A0099-group")


def test_what_a_mapping_may_add_later_inside_a_kept_type_does_not_leave(site):
    """`Observation: keep` keeps what the site's mapping makes today; a Reference's display (a
    name), a Reference's or any other Identifier (the MRN, the record number), contained
    resources (narrative, names, full birth dates) are what it may make tomorrow."""
    from adapter.exchange.view import POLICY_DIR, deidentifier
    t, _, _ = site
    policy = deidentifier(t.gateways["site-a"].store, "centre-v1", POLICY_DIR, str(t.folder / "site-a" / "exchange-key"))
    label = {"system": "http://ucmsc-cp.example.org/fhir/CodeSystem/study-site", "code": "site-a"}
    lot = {"system": "http://ucmsc-cp.example.org/fhir/sid/site-a-lot", "value": "LOT-7"}
    out = policy.apply({
        "resourceType": "Observation", "id": "site-a-A0001-x", "meta": {"security": [label]}, "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/site-a-A0001", "display": "Jane Doe",
                    "identifier": {"system": "urn:mrn", "value": "A0001"}},
        "focus": [{"identifier": {"value": "A0001"}}, {"identifier": lot}],
        "contained": [{"resourceType": "Patient", "id": "p", "text": {"status": "generated", "div": "<div>Jane</div>"},
                       "name": [{"family": "Doe"}], "birthDate": "2019-05-22"}],
        "modifierExtension": [{"url": "urn:x", "valueIdentifier": {"value": "A0001"}}]})
    text = json.dumps(out)
    assert "A0001" not in text and "Jane" not in text and "Doe" not in text and "2019-05-22" not in text, text
    assert "contained" not in out and out["focus"][1]["identifier"] == lot
    assert out["focus"][0]["identifier"]["system"] == policy.policy.pseudonym_system
