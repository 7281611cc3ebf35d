"""The trial's sponsor and sites as Organizations and Locations: loaded with the protocol,
named by the studies and by the Provenance of mapped data, searchable over HTTP on both stores."""
from __future__ import annotations

import json

import pytest

from adapter.exchange.cohorts import build_cohorts
from adapter.mapping.ingest import ingest
from adapter.mapping.spec import load_mapping
from adapter.study.build import build_resources
from adapter.protocol.spec import SPECS
from adapter.protocol.spec import load_spec
from conftest import ROOT

KEY = b"test-pseudonym-key-0123456789"
BASE = "http://ucmsc-cp.example.org/fhir"


def golden_input(site: str):
    spec = load_mapping(ROOT / "mappings" / "sites" / f"{site}.yaml")
    return spec, spec.relative(spec.data["golden"][0]["input"])


@pytest.fixture
def loaded(checked_store):
    """The protocol, then sites A and C's golden inputs, in a store that refuses dangling
    references: the Provenance's Organization must be there before the data."""
    checked_store.load(build_resources(load_spec(SPECS / "ucmsc-cp-v1.yaml")))
    for site in ("site-a", "site-c"):
        spec, source = golden_input(site)
        report = ingest(spec, [source], checked_store, KEY)
        assert report.by_type["Provenance"]["created"] > 0
        assert not any("Organization/" in r.reason for r in report.rejections), [r.reason for r in report.rejections]
    return checked_store


def ids(http, url: str) -> list[str]:
    response = http.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return sorted(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in response.json().get("entry", []))


def test_sites_and_sponsor_are_searchable(live, http, loaded):
    assert ids(http, f"{live}/Organization?name=Site C") == ["Organization/site-c"]
    assert ids(http, f"{live}/Organization?name=UC-MSC CP trial sponsor") == ["Organization/ucmsc-cp-sponsor"]
    assert ids(http, f"{live}/Organization?identifier={BASE}/sid/site|site-d") == ["Organization/site-d"]
    assert ids(http, f"{live}/Location?organization=Organization/site-a") == ["Location/site-a"]
    assert ids(http, f"{live}/Location?organization=Organization/ucmsc-cp-sponsor") == []
    assert ids(http, f"{live}/ResearchStudy?site=Location/site-b") == ["ResearchStudy/ucmsc-cp"]
    assert ids(http, f"{live}/ResearchStudy?sponsor=Organization/ucmsc-cp-sponsor") == ["ResearchStudy/ucmsc-cp"]
    location = http.get(f"{live}/Location/site-c", timeout=30).json()
    assert location["managingOrganization"]["reference"] == "Organization/site-c"


def test_mapped_provenance_names_the_site_organization(live, http, loaded):
    site_a = ids(http, f"{live}/Provenance?agent=Organization/site-a&_count=500")
    site_c = ids(http, f"{live}/Provenance?agent=Organization/site-c&_count=500")
    assert site_a and site_c and not set(site_a) & set(site_c)
    assert all(i.startswith("Provenance/site-a-") for i in site_a)
    provenance = http.get(f"{live}/{site_c[0]}", timeout=30).json()
    author = next(a for a in provenance["agent"] if a["type"]["coding"][0]["code"] == "author")
    assert author["who"] == {"reference": "Organization/site-c", "display": "Site C hospital (synthetic)"}
    # every Provenance the two ingests wrote names one of the two
    everything = ids(http, f"{live}/Provenance?_count=500")
    assert sorted(site_a + site_c) == everything


def test_each_site_study_names_its_location(live, http, loaded):
    made = build_cohorts(loaded, BASE, [("site-a", "Site A"), ("site-c", "Site C")])
    studies = {r["id"]: r for r in made if r["resourceType"] == "ResearchStudy"}
    assert studies["site-c-study"]["site"] == [{"reference": "Location/site-c", "display": "Site C, paediatric ward"}]
    assert ids(http, f"{live}/ResearchStudy?site=Location/site-c") == ["ResearchStudy/site-c-study",
                                                                      "ResearchStudy/ucmsc-cp"]
    stored = json.loads(loaded.read("ResearchStudy", "site-a-study").data)
    assert stored["partOf"] == [{"reference": "ResearchStudy/ucmsc-cp"}] and stored["site"][0]["reference"] == "Location/site-a"


@pytest.mark.parametrize("with_protocol", [True, False])
def test_a_pull_s_provenance_names_the_site_organization_when_the_centre_has_it(checked_store, with_protocol):
    """A site the protocol lists: its Organization; one it does not (or before the protocol is
    loaded): its identifier, so that the pull is recorded rather than refused as dangling."""
    from adapter.exchange.pull import PullReport
    from adapter.exchange.pull_record import record_provenance
    if with_protocol:
        checked_store.load(build_resources(load_spec(SPECS / "ucmsc-cp-v1.yaml")))
    report = PullReport(site="site-b", transaction_time="2026-11-30T10:00:00Z", files={"Patient.ndjson": "ab" * 32})
    made = record_provenance(checked_store, report, ["centre-v1|1.0.0"], "https://site-b.example.org/fhir")
    stored = json.loads(checked_store.read("Provenance", made["id"]).data)
    author = next(a["who"] for a in stored["agent"] if a["type"]["coding"][0]["code"] == "author")
    if with_protocol:
        assert author == {"reference": "Organization/site-b", "display": "Site B university hospital (synthetic)"}
    else:
        assert author == {"identifier": {"system": f"{BASE}/sid/site", "value": "site-b"}, "display": "site-b"}


def test_a_protocol_without_sites_names_the_site_by_its_identifier(store):
    """Found by a second review: with no `sites:` in the protocol no Organization is ever made,
    so a Provenance naming one would leave every row dangling (reference checks on) and the
    advice to load the protocol again could not help."""
    import dataclasses

    from adapter.mapping.engine import _site_agent
    from adapter.mapping.ingest import missing_definitions
    spec = load_mapping(ROOT / "mappings" / "sites" / "site-c.yaml")
    assert _site_agent(spec) == {"reference": "Organization/site-c", "display": spec.catalogue.sites["site-c"]}
    bare = dataclasses.replace(spec, catalogue=dataclasses.replace(spec.catalogue, sites={}))
    assert _site_agent(bare)["identifier"] == {"system": "http://ucmsc-cp.example.org/fhir/sid/site", "value": "site-c"}
    protocol = build_resources(load_spec(ROOT / "mappings/protocol/ucmsc-cp-v1.yaml"))
    store.load([{k: v for k, v in r.items() if k not in ("site", "sponsor")}  # a protocol without sites
                for r in protocol if r["resourceType"] not in ("Organization", "Location")])
    assert missing_definitions(bare, store) is None  # the study is there; no Organization is wanted
    assert "Organization/site-c" in (missing_definitions(spec, store) or "")
