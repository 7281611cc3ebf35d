"""The repository contract: versions, tombstones, history, transactional writes."""
from __future__ import annotations

import decimal

import pytest

from adapter.fhir.outcomes import FhirError
from adapter.fhir.search import parse_search
from conftest import observation, table_counts


def test_create_assigns_id_and_version_1(store):
    stored = store.create(observation())
    assert stored.version_id == 1 and stored.created and stored.id
    assert b'"versionId":"1"' in stored.data
    assert store.read("Observation", stored.id).data == stored.data


def test_every_update_is_a_new_version_and_old_ones_stay_readable(store):
    store.update(observation(id="o1", status="preliminary"))
    second = store.update(observation(id="o1", status="final"))
    assert second.version_id == 2 and not second.created
    assert b'"preliminary"' in store.vread("Observation", "o1", 1).data
    assert b'"final"' in store.read("Observation", "o1").data


def test_stored_bytes_keep_decimal_digits(store):
    stored = store.update(observation(id="o1", valueQuantity={"value": decimal.Decimal("6.30")}))
    assert b'"value":6.30' in store.read("Observation", "o1").data
    assert stored.data.startswith(b'{"resourceType":"Observation","id":"o1","meta":')


def test_if_match_guards_against_lost_updates(store):
    store.update(observation(id="o1"))
    store.update(observation(id="o1", status="preliminary"), if_match=1)
    before = table_counts(store)
    with pytest.raises(FhirError) as caught:
        store.update(observation(id="o1", status="amended"), if_match=1)
    assert caught.value.status == 412
    assert table_counts(store) == before


def test_delete_writes_a_tombstone(store):
    store.update(observation(id="o1"))
    tomb = store.delete("Observation", "o1")
    assert tomb.version_id == 2 and tomb.deleted
    with pytest.raises(FhirError) as caught:
        store.read("Observation", "o1")
    assert caught.value.status == 410
    with pytest.raises(FhirError) as caught:
        store.vread("Observation", "o1", 2)
    assert caught.value.status == 410
    assert store.vread("Observation", "o1", 1).data
    assert store.delete("Observation", "o1") is None  # nothing left to delete
    assert store.search(parse_search("Observation", [])).total == 0
    revived = store.update(observation(id="o1"))
    assert revived.version_id == 3 and revived.created


def test_unknown_resource_and_version_are_404(store):
    for call in (lambda: store.read("Observation", "nope"),
                 lambda: store.vread("Observation", "nope", 1),
                 lambda: store.history("Observation", "nope")):
        with pytest.raises(FhirError) as caught:
            call()
        assert caught.value.status == 404


def test_history_newest_first_with_paging(store):
    for status in ("registered", "preliminary", "final", "amended"):
        store.update(observation(id="o1", status=status))
    store.delete("Observation", "o1")
    page = store.history("Observation", "o1", count=2)
    assert page.total == 5
    assert [e.version_id for e in page.entries] == [5, 4]
    versions = [5, 4]
    while page.next_cursor is not None:
        page = store.history("Observation", "o1", count=2, cursor=page.next_cursor)
        versions += [e.version_id for e in page.entries]
    assert versions == [5, 4, 3, 2, 1]


def test_history_since_and_levels(store):
    store.update(observation(id="o1"))
    store.update({"resourceType": "Patient", "id": "p1"})
    later = store.update(observation(id="o2"))
    assert store.history("Observation").total == 2
    assert store.history().total == 3
    since = store.history(since=later.last_updated.rstrip("Z"))
    assert [e.id for e in since.entries] == ["o2"]


def test_load_is_one_transaction_per_batch(store):
    bad = {"resourceType": "Observation", "id": "o2"}  # no status: the index still loads
    assert store.load([observation(id="o1"), bad]) == 2
    before = table_counts(store)
    with pytest.raises(FhirError):  # the second has no id: the whole batch is rolled back
        store.load([observation(id="o3"), {"resourceType": "Observation"}])
    assert table_counts(store) == before


def test_same_resource_twice_in_a_batch_keeps_both_versions(store):
    store.load([observation(id="o1", status="preliminary"), observation(id="o1", status="final")])
    assert b'"final"' in store.read("Observation", "o1").data
    assert store.history("Observation", "o1").total == 2
    result = store.search(parse_search("Observation", [("status", "preliminary")]))
    assert result.total == 0


def test_index_follows_the_current_version(store):
    store.update(observation(id="o1", status="preliminary"))
    store.update(observation(id="o1", status="final"))
    assert store.search(parse_search("Observation", [("status", "preliminary")])).total == 0
    assert store.search(parse_search("Observation", [("status", "final")])).total == 1
