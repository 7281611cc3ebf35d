"""Bounds on what one request may ask: each limit is a 400 or 413 OperationOutcome naming it."""
from __future__ import annotations

import time

import pytest

from adapter.fhir.jsonio import MAX_NUMBER_EXPONENT, MAX_NUMBER_LENGTH, parse
from adapter.fhir.outcomes import FhirError

FHIR_JSON = "application/fhir+json"


def _outcome(response, status, where):
    assert response.status_code == status, response.data[:500]
    outcome = response.get_json(force=True)
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(where in i.get("expression", []) for i in outcome["issue"]), outcome
    return outcome


@pytest.mark.parametrize("literal", [
    "1E+999999999", "1e-999999999", f"1e{MAX_NUMBER_EXPONENT + 1}", "9" * (MAX_NUMBER_LENGTH + 1),
    "0." + "1" * MAX_NUMBER_LENGTH, "1e+" + "9" * 40,
])
def test_numbers_out_of_range_are_refused_before_conversion(literal):
    started = time.perf_counter()
    with pytest.raises(FhirError) as caught:
        parse(f'{{"resourceType": "Observation", "component": [{{}}, {{"valueInteger": {literal}}}]}}')
    assert time.perf_counter() - started < 0.5
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == "Observation.component[1].valueInteger"


@pytest.mark.parametrize("literal", ["1e300", "-1.5e-300", "1" * MAX_NUMBER_LENGTH, "6.30"])
def test_numbers_in_range_are_kept(literal):
    assert parse(f'[{literal}]')[0] == type(parse(f'[{literal}]')[0])(literal)


def test_sixty_bytes_do_not_stop_a_worker(client):
    started = time.perf_counter()
    r = client.post("/fhir/Patient", data=b'{"resourceType":"Patient","multipleBirthInteger":1E+999999999}',
                    content_type=FHIR_JSON)
    assert time.perf_counter() - started < 1
    _outcome(r, 400, "Patient.multipleBirthInteger")
