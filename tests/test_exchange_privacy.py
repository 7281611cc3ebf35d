"""What leaves a site under centre-v1 would pass a privacy review (issue 27), on both stores:
free text a site's user writes anywhere never reaches the centre; every date of a child moves
by the child's own offset, the same at every pull, so intervals hold to the day; the children
reach the policy's k or are suppressed and counted; the centre refuses data that break k; and
the centre's outcome reports are exactly the sites' own."""
from __future__ import annotations

import base64
import collections
import json
from datetime import date
from typing import Any

import orjson
import pytest
import requests

from adapter.exchange.anonymity import classes_of
from adapter.exchange.deidentify import child_of
from adapter.exchange.view import POLICY_DIR, deidentifier
from adapter.fhir.search import parse_search
from adapter.fhir.sites import SITE_SYSTEM
from adapter.outcomes.evaluate import evaluate_measure
from adapter.store import open_store
from exchange_helpers import POLICY, topology
from test_exchange import _centre_bytes

PII = "mother Jane Smith, 12 High Street, tel 555-0100, MRN96207802, born 2019-05-22"
NEEDLES = (b"Jane Smith", b"High Street", b"555-0100", b"MRN96207802", base64.b64encode(PII.encode()))
LABEL = {"security": [{"system": SITE_SYSTEM, "code": "site-a"}]}
CHILD = {"reference": "Patient/site-a-A0001"}
WHO = {"display": PII}


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _leaky() -> list[dict[str, Any]]:
    """A site's user writing free text into every element the review found leaking."""
    coding = {"system": "http://hl7.org/fhir/sid/icd-10", "code": "G80.0", "display": PII}
    loinc = {"system": "http://loinc.org", "code": "8480-6"}
    return [
        {"resourceType": "Condition", "id": "site-a-leak-condition", "meta": LABEL, "subject": CHILD,
         "code": {"coding": [coding], "text": PII}, "onsetString": PII, "recorder": WHO, "asserter": WHO,
         "note": [{"text": PII}]},
        {"resourceType": "Observation", "id": "site-a-leak-observation", "meta": LABEL, "status": "final",
         "code": {"coding": [loinc], "text": PII}, "subject": CHILD, "valueString": PII,
         "effectiveDateTime": "2025-06-19", "component": [{"code": {"coding": [loinc]}, "valueString": PII}],
         "extension": [{"url": "http://example.org/fhir/StructureDefinition/free", "valueString": PII}]},
        {"resourceType": "Procedure", "id": "site-a-leak-procedure", "meta": LABEL, "status": "completed",
         "subject": CHILD, "recorder": WHO, "asserter": WHO, "performedDateTime": "2025-06-19"},
        {"resourceType": "CarePlan", "id": "site-a-leak-careplan", "meta": LABEL, "status": "active",
         "intent": "plan", "subject": CHILD, "author": WHO, "description": PII},
        {"resourceType": "AdverseEvent", "id": "site-a-leak-event", "meta": LABEL, "actuality": "actual",
         "subject": CHILD, "contributor": [WHO], "date": "2025-06-20"},
        {"resourceType": "BiologicallyDerivedProduct", "id": "site-a-leak-lot", "meta": LABEL,
         "collection": {"collector": WHO, "collectedDateTime": "2025-06-01"}},
        {"resourceType": "Provenance", "id": "site-a-leak-provenance", "meta": LABEL,
         "target": [CHILD], "recorded": "2025-06-19T10:00:00Z", "agent": [{"who": WHO}],
         "signature": [{"type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1"}],
                        "when": "2025-06-19T10:00:00Z", "who": WHO, "data": base64.b64encode(PII.encode()).decode()}]},
        {"resourceType": "Group", "id": "site-a-leak-group", "meta": LABEL, "type": "person", "actual": True,
         "name": PII},
    ]


@pytest.mark.slow
def test_free_text_written_by_a_site_user_never_reaches_the_centre(kind, tmp_path):
    with topology(kind, tmp_path, ("site-a",)) as t:
        site = t.fhir("site-a")
        headers = {"Authorization": f"Bearer {t.token('site-a', 'ehr', 'system/*.cruds')}",
                   "Content-Type": "application/fhir+json"}
        for resource in _leaky():
            answer = requests.put(f"{site}/{resource['resourceType']}/{resource['id']}", json=resource,
                                  headers=headers, timeout=30)
            assert answer.status_code == 201, answer.text
        report = t.pull("site-a")
        assert report.ok, report.refused
        assert report.received["Observation"] > 0 and report.received["Provenance"] > 0
        stored = b"".join(_centre_bytes(t.urls["centre"]))
        assert [n for n in NEEDLES if n in stored] == []
        assert b"2019-05-22" not in stored  # the full birth date, in free text or as a date
        shared = t.at_centre("site-a")
        leaked_lot = next(r for (rtype, _), r in shared.items() if rtype == "BiologicallyDerivedProduct"
                          and "collector" not in r.get("collection", {}) and r.get("collection"))
        assert set(leaked_lot["collection"]) == {"collectedDateTime"}  # the date, shifted; the collector gone


@pytest.mark.slow
def test_a_childs_dates_move_by_one_offset_the_same_at_every_pull(kind, tmp_path):
    with topology(kind, tmp_path, ("site-a",)) as t:
        first = t.pull("site-a")
        assert first.ok
        before = t.at_centre("site-a")
        policy = deidentifier(t.gateways["site-a"].store, "centre-v1", POLICY_DIR,
                              str(t.folder / "site-a" / "exchange-key"))
        site_store = t.gateways["site-a"].store
        offsets: dict[str, set[int]] = collections.defaultdict(set)
        compared = 0
        for rtype, element in (("Observation", "effectiveDateTime"), ("Procedure", "performedDateTime"),
                               ("Encounter", "period")):
            for page in site_store.scan(parse_search(rtype, [("_count", "1000")])):
                for entry in page:
                    original = orjson.loads(entry.data)
                    child = child_of(original)
                    shared = before.get((rtype, policy.new_id("site-a", rtype, entry.id)))
                    if shared is None or child is None or element not in original:
                        continue
                    was, now = _day(original[element]), _day(shared[element])
                    assert now != was  # no date of the child's is the date it was
                    offsets[child].add((now - was).days)
                    compared += 1
        assert compared > 500
        assert all(len(days) == 1 for days in offsets.values())  # one offset a child: intervals kept
        assert len({next(iter(days)) for days in offsets.values()}) > len(offsets) // 2  # children differ
        assert all(0 < abs(next(iter(days))) <= 180 for days in offsets.values())
        t.pull("site-a", since=None)  # everything again: the same dates
        assert t.at_centre("site-a") == before


def _day(value: Any) -> date:
    text = value["start"] if isinstance(value, dict) else value
    return date.fromisoformat(text[:10])


def test_the_demo_sites_reach_k_or_are_suppressed_and_counted(four_sites, tmp_path):
    store, _ = four_sites
    policy = deidentifier(store, "centre-v1", POLICY_DIR, str(tmp_path / "exchange-key"))
    release = policy.release
    assert release is not None and release.ok and release.k == POLICY.k_anonymity.k
    assert release.children == 64
    assert all(n >= release.k for n in release.classes.values())
    assert sum(release.classes.values()) + len(release.suppressed) == release.children
    # what leaves is what was proved: the shared Patients and Conditions, classed as the centre would
    patients = {r["id"]: r for r in _shared(store, policy, "Patient")}
    conditions = collections.defaultdict(list)
    for condition in _shared(store, policy, "Condition"):
        conditions[condition["subject"]["reference"].removeprefix("Patient/")].append(condition)
    arrived = classes_of(POLICY.k_anonymity, ((p, conditions[pid]) for pid, p in patients.items()))
    assert arrived == release.classes


def _shared(store: Any, policy: Any, rtype: str) -> list[dict[str, Any]]:
    return [out for page in store.scan(parse_search(rtype, [("_count", "1000")]))
            for entry in page if (out := policy.apply(orjson.loads(entry.data))) is not None]


@pytest.mark.slow
def test_the_centre_refuses_a_pull_that_breaks_k(kind, tmp_path):
    """A site whose policy file lost its k-anonymity section sends each child's quasi-identifiers
    as they are: the centre, which holds the real policy, refuses the pull whole."""
    lax = tmp_path / "lax-policies"
    lax.mkdir()
    text = (POLICY_DIR / "centre-v1.yaml").read_text()
    start, end = text.index("k_anonymity:"), text.index("\nrules:")
    (lax / "centre-v1.yaml").write_text(text[:start] + text[end:])
    with topology(kind, tmp_path, ("site-a",), policy_dirs={"site-a": lax}) as t:
        report = t.pull("site-a")
        assert not report.ok and all("smaller than k = 5" in r for r in report.refused)
        assert t.at_centre("site-a") == {}  # nothing of it loaded


MEASURES = ("ucmsc-cp-adl", "ucmsc-cp-gmfm-88-total", "ucmsc-cp-adverse-events")
PERIOD = (date(1900, 1, 1), date(2100, 12, 31))  # wide: the shifted dates stay inside it


def _figures(report: dict[str, Any]) -> Any:
    """A MeasureReport's figures: every group, population, score, extension and stratum."""
    return json.loads(json.dumps(report["group"], sort_keys=True))


@pytest.mark.slow
def test_the_centres_outcome_reports_are_exactly_the_sites_own(kind, tmp_path):
    with topology(kind, tmp_path, ("site-a", "site-b")) as t:
        assert t.pull("site-a").ok
        centre = open_store(t.urls["centre"])
        try:
            for measure in MEASURES:  # the centre holding one site: the same report, arm by arm
                own = evaluate_measure(t.gateways["site-a"].store, measure, "population", None, PERIOD)
                there = evaluate_measure(centre, measure, "population", None, PERIOD)
                assert _figures(there) == _figures(own), measure
            assert t.pull("site-b").ok
            for measure in MEASURES:  # both sites: each site's own figures are the centre's stratum of it
                there = evaluate_measure(centre, measure, "population", None, PERIOD)
                for site in ("site-a", "site-b"):
                    own = evaluate_measure(t.gateways[site].store, measure, "population", None, PERIOD)
                    assert [_overall(g) for g in own["group"]] == [_site_stratum(g, site) for g in there["group"]], \
                        (measure, site)
        finally:
            centre.close()


def _overall(group: dict[str, Any]) -> Any:
    return json.loads(json.dumps({k: group[k] for k in ("population", "measureScore", "extension") if k in group},
                                 sort_keys=True))


def _site_stratum(group: dict[str, Any], site: str) -> Any:
    for stratifier in group.get("stratifier", []):
        for stratum in stratifier.get("stratum", []):
            if (stratum.get("value") or {}).get("text") == site or any(
                    c.get("code") == site for c in (stratum.get("value") or {}).get("coding", [])):
                return json.loads(json.dumps({k: stratum[k] for k in ("population", "measureScore", "extension")
                                              if k in stratum}, sort_keys=True))
    return None
