"""One contract, every store: what the repository interface promises (adapter/store/repository.py),
held against the in-memory store and both SQL stores alike. A store added later runs here first."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest

from adapter.fhir.outcomes import FhirError
from adapter.fhir.search import parse_search
from adapter.store.memory import MemoryStore
from adapter.store.repository import Repository
from adapter.store.sql_store import SqlStore
from adapter.private import open_private
from conftest import _migrated_sqlite, reused_postgres_schema


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest, tmp_path) -> Iterator[Repository]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        path = tmp_path / "adapter.db"
        with open_private(path, "wb") as out:
            out.write(_migrated_sqlite())
        store = SqlStore(f"sqlite:///{path}", check_references=False)
        yield store
        store.close()
        return
    with reused_postgres_schema() as url:
        store = SqlStore(url, check_references=False)
        yield store
        store.close()


def _patient(pid: str, **extra: object) -> dict:
    return {"resourceType": "Patient", "id": pid, **extra}


def _body(stored) -> dict:
    return json.loads(stored.data)


def _ids(page) -> list[str]:
    return [e.id for e in page.entries]


def test_a_create_gets_an_id_and_version_1_and_reads_back_as_written(repo):
    made = repo.create({"resourceType": "Patient", "gender": "female", "birthDate": "2019-05-01"})
    assert made.created and made.version_id == 1 and made.method == "POST" and made.id
    read = repo.read("Patient", made.id)
    assert read.data == made.data and _body(read)["meta"]["versionId"] == "1"
    assert _body(read)["gender"] == "female"


def test_an_update_makes_the_next_version_and_if_match_guards_it(repo):
    first = repo.update(_patient("p1", gender="male"))
    assert first.created and first.version_id == 1
    second = repo.update(_patient("p1", gender="female"), if_match=1)
    assert not second.created and second.version_id == 2
    with pytest.raises(FhirError) as refused:
        repo.update(_patient("p1", gender="other"), if_match=1)
    assert refused.value.status == 412
    assert _body(repo.read("Patient", "p1"))["gender"] == "female"
    assert _body(repo.vread("Patient", "p1", 1))["gender"] == "male"


def test_an_update_that_says_nothing_new_writes_no_version(repo):
    repo.update(_patient("p1", gender="male"))
    again = repo.update(_patient("p1", gender="male"))
    assert again.unchanged and again.version_id == 1
    assert repo.history("Patient", "p1").total == 1


def test_a_delete_leaves_a_tombstone_and_the_old_versions(repo):
    repo.update(_patient("p1", gender="male"))
    gone = repo.delete("Patient", "p1")
    assert gone is not None and gone.deleted and gone.version_id == 2
    for read in (lambda: repo.read("Patient", "p1"), lambda: repo.vread("Patient", "p1", 2)):
        with pytest.raises(FhirError) as error:
            read()
        assert error.value.status == 410
    assert _body(repo.vread("Patient", "p1", 1))["gender"] == "male"
    assert repo.delete("Patient", "p1") is None and repo.delete("Patient", "nobody") is None
    assert repo.current("Patient", "p1") is None and repo.current("Patient", "nobody") is None
    again = repo.update(_patient("p1", gender="female"))
    assert again.version_id == 3 and again.created


def test_unknown_resources_and_versions_are_404(repo):
    repo.update(_patient("p1"))
    for read in (lambda: repo.read("Patient", "nobody"), lambda: repo.vread("Patient", "p1", 9),
                 lambda: repo.history("Patient", "nobody")):
        with pytest.raises(FhirError) as error:
            read()
        assert error.value.status == 404


def test_history_is_newest_first_paged_and_filtered(repo):
    for gender in ("male", "female", "other"):
        repo.update(_patient("p1", gender=gender))
    repo.update(_patient("p2"))
    whole = repo.history("Patient", "p1")
    assert [e.version_id for e in whole.entries] == [3, 2, 1] and whole.total == 3
    first = repo.history("Patient", count=2)
    assert [(e.id, e.version_id) for e in first.entries] == [("p2", 1), ("p1", 3)]
    rest = repo.history("Patient", count=2, cursor=first.next_cursor)
    assert [(e.id, e.version_id) for e in rest.entries] == [("p1", 2), ("p1", 1)] and rest.next_cursor is None
    later = repo.history("Patient", since=repo.read("Patient", "p2").last_updated)
    assert [e.id for e in later.entries] == ["p2"]


@pytest.fixture
def children(repo: Repository) -> Repository:
    repo.update(_patient("a", gender="male", birthDate="2018-03-01", name=[{"family": "Zhang"}]))
    repo.update(_patient("b", gender="female", birthDate="2019-07-15", name=[{"family": "Zhao"}]))
    repo.update(_patient("c", gender="female", birthDate="2020-01-20", name=[{"family": "Li"}]))
    repo.update({"resourceType": "Observation", "id": "o1", "status": "final",
                 "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                 "subject": {"reference": "Patient/b"}, "valueQuantity": {
                     "value": 18.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
    return repo


@pytest.mark.parametrize("params, expected", [
    ([("gender", "female")], ["b", "c"]),
    ([("gender:not", "female")], ["a"]),
    ([("family", "zh")], ["a", "b"]),
    ([("family:exact", "Li")], ["c"]),
    ([("family:contains", "ha")], ["a", "b"]),
    ([("birthdate", "ge2019")], ["b", "c"]),
    ([("birthdate", "lt2019-07-15")], ["a"]),
    ([("birthdate", "2019-07")], ["b"]),
    ([("_id", "a,c")], ["a", "c"]),
    ([("gender", "female"), ("birthdate", "le2019-12-31")], ["b"]),
    ([("gender:missing", "true")], []),
])
def test_searches_filter_by_every_kind_of_value(children, params, expected):
    assert _ids(children.search(parse_search("Patient", params))) == expected


@pytest.mark.parametrize("params, expected", [
    ([("subject", "Patient/b")], ["o1"]),
    ([("subject", "Patient/a")], []),
    ([("code", "http://loinc.org|29463-7")], ["o1"]),
    ([("code", "http://snomed.info/sct|29463-7")], []),
    ([("value-quantity", "gt18|http://unitsofmeasure.org|kg")], ["o1"]),
    ([("value-quantity", "lt18")], []),
    ([("value-quantity", "18.5")], ["o1"]),
])
def test_searches_by_reference_token_and_quantity(children, params, expected):
    assert _ids(children.search(parse_search("Observation", params))) == expected


def test_a_search_pages_to_the_end_with_every_match_once(children):
    request = parse_search("Patient", [("_count", "2"), ("_total", "accurate")])
    seen, page = [], children.search(request)
    assert page.total == 3
    while True:
        seen += _ids(page)
        if page.next_cursor is None:
            break
        page = children.search(replace(request, cursor=page.next_cursor))
    assert seen == ["a", "b", "c"]
    newest = children.search(parse_search("Patient", [("_sort", "-_lastUpdated"), ("_count", "2")]))
    assert _ids(newest) == ["c", "b"]
    rest = children.search(replace(parse_search("Patient", [("_sort", "-_lastUpdated"), ("_count", "2")]),
                                   cursor=newest.next_cursor))
    assert _ids(rest) == ["a"]
    assert [e.id for page in children.scan(parse_search("Patient", [("_count", "2")])) for e in page] == \
        ["a", "b", "c"]


def test_a_transaction_is_all_or_nothing_and_reads_its_own_writes(repo):
    repo.update(_patient("p1", gender="male"))
    with pytest.raises(RuntimeError):
        with repo.transaction() as tx:
            tx.update(_patient("p1", gender="female"))
            tx.create(_patient("ignored"), "p2")
            assert tx.read("Patient", "p2") is not None
            raise RuntimeError("the client's batch failed half way")
    assert _body(repo.read("Patient", "p1"))["gender"] == "male" and repo.current("Patient", "p2") is None
    with repo.transaction() as tx:
        tx.update(_patient("p1", gender="female"))
        assert tx.delete("Patient", "p1") is not None
    with pytest.raises(FhirError):
        repo.read("Patient", "p1")


def test_a_load_writes_what_changed_and_says_what_it_did(repo):
    outcomes: list = []
    assert repo.load([_patient("p1", gender="male"), _patient("p2")], outcomes=outcomes) == 2
    assert [(o.id, o.created, o.unchanged) for o in outcomes] == [("p1", True, False), ("p2", True, False)]
    outcomes.clear()
    assert repo.load([_patient("p1", gender="male"), _patient("p2", gender="female")], outcomes=outcomes) == 1
    assert [(o.id, o.unchanged) for o in outcomes] == [("p1", True), ("p2", False)]
    assert repo.read("Patient", "p2").version_id == 2
