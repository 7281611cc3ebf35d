"""The access guard over a real store (SQLite and PostgreSQL): scopes and sites on every call.

The same checks answer over HTTP with real tokens in test_authorisation.py; here each rule is
pinned at the repository, where every route, operation and export job meets it.
"""
from __future__ import annotations

from typing import Any

import orjson
import pytest

from adapter.auth.guard import GuardedRepository, access_of
from adapter.fhir.outcomes import FhirError
from adapter.fhir.search import parse_search
from adapter.fhir.sites import sites_of, with_site
from tests.conftest import table_counts


def _patient(pid: str, site: str | None) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": pid}
    return with_site(patient, site) if site else patient


def _obs(oid: str, pid: str, site: str | None) -> dict[str, Any]:
    obs = {"resourceType": "Observation", "id": oid, "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
           "subject": {"reference": f"Patient/{pid}"}}
    return with_site(obs, site) if site else obs


@pytest.fixture
def two_sites(store: Any) -> Any:
    store.load([_patient("a1", "site-a"), _patient("b1", "site-b"),
                _obs("oa1", "a1", "site-a"), _obs("oa2", "a1", "site-a"), _obs("ob1", "b1", "site-b"),
                {"resourceType": "PlanDefinition", "id": "plan", "status": "active"}])
    return store


def _site_a(store: Any, scope: str = "system/*.cruds") -> GuardedRepository:
    return GuardedRepository(store, access_of("site-a-ehr", "site-a", scope))


def _refused(call: Any, status: int = 403) -> FhirError:
    with pytest.raises(FhirError) as caught:
        call()
    assert caught.value.status == status, caught.value
    assert caught.value.issues[0].code == {403: "forbidden", 404: "not-found", 422: "not-found"}[status]
    return caught.value


def _unknown(call: Any, what: str) -> None:
    """Refused as an id the store does not hold: its 404, word for word."""
    assert str(_refused(call, 404)) == f"{what} is not known"


def test_a_site_reads_its_own_data_and_the_protocol_not_another_sites(two_sites: Any) -> None:
    repo = _site_a(two_sites)
    assert repo.read("Patient", "a1").id == "a1"
    assert repo.read("PlanDefinition", "plan").id == "plan"
    _unknown(lambda: repo.read("Patient", "b1"), "Patient/b1")
    assert str(_refused(lambda: repo.vread("Observation", "ob1", 1), 404)) == "Observation/ob1 has no version 1"
    _unknown(lambda: repo.history("Observation", "ob1"), "Observation/ob1")


def test_searches_and_counts_hold_to_the_site(two_sites: Any) -> None:
    repo = _site_a(two_sites)
    page = repo.search(parse_search("Observation", []))
    assert {e.id for e in page.entries} == {"oa1", "oa2"}
    counted = repo.search(parse_search("Observation", [("_summary", "count")]))
    assert counted.total == 2
    by_subject = repo.search(parse_search("Observation", [("subject", "Patient/b1")]))
    assert by_subject.entries == [] and by_subject.total == 0
    centre = GuardedRepository(two_sites, access_of("centre", None, "system/*.rs"))
    assert centre.search(parse_search("Observation", [("_summary", "count")])).total == 3


def test_includes_of_another_site_are_left_out_unsaid_and_outside_the_scopes_said(two_sites: Any) -> None:
    # Observation ob1 of site B points at a1 (a mistake at B): A's revinclude must not bring it.
    two_sites.load([_obs("ob2", "a1", "site-b")])
    repo = _site_a(two_sites)
    page = repo.search(parse_search("Patient", [("_id", "a1"), ("_revinclude", "Observation:subject")]))
    assert {e.id for e in page.included} == {"oa1", "oa2"}
    assert page.notes == ()  # another site's resources are neither shown nor counted
    narrow = _site_a(two_sites, "system/Observation.rs")
    page = narrow.search(parse_search("Observation", [("_include", "Observation:subject")]))
    assert page.entries and page.included == []
    assert "Patient" in page.notes[0].diagnostics


def test_scopes_too_narrow_are_refused(two_sites: Any) -> None:
    create_only = _site_a(two_sites, "system/Observation.c")
    error = _refused(lambda: create_only.read("Observation", "oa1"))
    assert "system/Observation.r" in str(error)
    patients_only = _site_a(two_sites, "system/Patient.rs")
    _refused(lambda: patients_only.search(parse_search("Observation", [])))
    _refused(lambda: patients_only.create(_obs("new", "a1", None)))
    assert patients_only.permitted(("Patient", "Observation"), "s") == ("Patient",)


def test_writes_are_labelled_and_never_reach_another_site(two_sites: Any) -> None:
    repo = _site_a(two_sites)
    made = repo.create(_obs("x", "a1", None))
    assert sites_of(orjson.loads(made.data)) == {"site-a"}
    before = table_counts(two_sites)
    assert "namespace" in str(_refused(lambda: repo.update(_obs("ob1", "b1", None))))  # B's resource
    _refused(lambda: repo.create(_obs("y", "b1", None)), 422)  # into B's patient: as into an unknown one
    _refused(lambda: repo.create(_obs("z", "a1", "site-b")))  # relabelled
    assert repo.delete("Observation", "ob1") is None  # as for an unknown id: nothing to delete
    _refused(lambda: repo.update({"resourceType": "PlanDefinition", "id": "plan", "status": "retired"}))
    assert table_counts(two_sites) == before


def test_a_transaction_entry_into_another_site_writes_nothing(two_sites: Any) -> None:
    repo = _site_a(two_sites)
    before = table_counts(two_sites)
    with pytest.raises(FhirError) as caught:
        with repo.transaction() as tx:
            tx.create(_obs("t1", "a1", None))
            tx.update(_obs("ob1", "b1", None))
    assert caught.value.status == 403
    assert table_counts(two_sites) == before


def test_history_and_everything_hold_to_the_site_and_scopes(two_sites: Any) -> None:
    two_sites.delete("Observation", "ob1")
    repo = _site_a(two_sites)
    ids = {e.id for e in repo.history("Observation").entries}
    assert ids == {"oa1", "oa2"}  # B's deletion is B's too
    everything = repo.everything("a1", ("Patient", "Observation"), None, 50, None)
    assert {e.id for e in everything.entries} == {"a1", "oa1", "oa2"}
    _unknown(lambda: repo.everything("b1", ("Patient", "Observation"), None, 50, None), "Patient/b1")
    patients_only = _site_a(two_sites, "system/Patient.rs")
    _refused(lambda: patients_only.everything("a1", ("Patient", "Observation"), None, 50, None))


def test_exports_scan_only_the_site(two_sites: Any) -> None:
    repo = _site_a(two_sites)
    scanned = [e.id for page in repo.scan(parse_search("Observation", [("_count", "100")])) for e in page]
    assert sorted(scanned) == ["oa1", "oa2"]


def test_what_the_centre_writes_about_a_sites_child_becomes_that_sites(two_sites: Any) -> None:
    centre = GuardedRepository(two_sites, access_of("centre", None, "system/*.cruds"))
    made = centre.create({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                          "subject": {"reference": "Patient/a1"}})
    assert sites_of(orjson.loads(made.data)) == {"site-a"}
    assert _site_a(two_sites).read("CarePlan", made.id).id == made.id
    unlabelled = two_sites.create({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                                   "subject": {"reference": "Patient/nobody"}})
    assert sites_of(orjson.loads(unlabelled.data)) == set()
    _unknown(lambda: _site_a(two_sites).read("CarePlan", unlabelled.id), f"CarePlan/{unlabelled.id}")


def test_validate_needs_a_write_scope_on_the_type(two_sites: Any) -> None:
    from adapter.gateway.core import FhirRequest
    from adapter.gateway.operations import validate_operation
    body = orjson.dumps(_obs("v", "a1", None))
    req = FhirRequest(base_url="http://x/fhir", resource_type="Observation", body=body)
    assert validate_operation(req, _site_a(two_sites, "system/Observation.c")).status == 200
    _refused(lambda: validate_operation(req, _site_a(two_sites, "system/Observation.rs")))


def test_a_site_cannot_take_over_another_sites_deleted_id(two_sites: Any) -> None:
    two_sites.delete("Observation", "ob1")
    repo = _site_a(two_sites)
    before = table_counts(two_sites)
    _refused(lambda: repo.update(_obs("ob1", "a1", None)))
    with pytest.raises(FhirError) as caught:
        with repo.transaction() as tx:
            tx.update(_obs("ob1", "a1", None))
    assert caught.value.status == 403
    assert table_counts(two_sites) == before
    assert repo.update(_obs("site-a-new", "a1", None)).created  # a new id in its namespace is the site's to make
