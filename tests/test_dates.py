from __future__ import annotations

import pytest

from adapter.fhir.dates import date_range


@pytest.mark.parametrize("text,low,high", [
    ("2020", "2020-01-01T00:00:00.000000", "2020-12-31T23:59:59.999999"),
    ("2024-02", "2024-02-01T00:00:00.000000", "2024-02-29T23:59:59.999999"),
    ("2023-02", "2023-02-01T00:00:00.000000", "2023-02-28T23:59:59.999999"),
    ("2020-12-31", "2020-12-31T00:00:00.000000", "2020-12-31T23:59:59.999999"),
    ("2020-01-01T00:30:00+01:00", "2019-12-31T23:30:00.000000", "2019-12-31T23:30:00.999999"),
    ("2020-01-01T10:00:00.5Z", "2020-01-01T10:00:00.500000", "2020-01-01T10:00:00.599999"),
    ("0999-01-01", "0999-01-01T00:00:00.000000", "0999-01-01T23:59:59.999999"),
    # a leap second is valid FHIR (and passes the models): its minute's last second
    ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.000000", "2016-12-31T23:59:59.999999"),
    ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.500000", "2016-12-31T23:59:59.599999"),
])
def test_ranges(text, low, high):
    assert date_range(text) == (low, high)


@pytest.mark.parametrize("text", ["2020-13", "2020-02-30", "20", "2020/01/01", "2020-01-01T25:00Z", ""])
def test_malformed(text):
    with pytest.raises(ValueError):
        date_range(text)


def test_a_leap_second_is_stored_and_found_over_rest(client):
    """Found by the shape validator's differential test: validate accepts `23:59:60`, and the
    search index's date range raised ValueError on it (a 500 on write)."""
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "leap"},
            "effectiveDateTime": "2016-12-31T23:59:60Z"}
    created = client.post("/fhir/Observation", json=body)
    assert created.status_code == 201, created.get_json()
    found = client.get("/fhir/Observation?date=2016-12-31&code:text=leap").get_json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [created.get_json()["id"]]
