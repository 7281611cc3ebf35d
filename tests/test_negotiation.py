from __future__ import annotations

import pytest

from adapter.fhir.outcomes import FhirError
from adapter.gateway.negotiation import check_body_type, response_type


@pytest.mark.parametrize("accept,fmt,expected", [
    (None, None, "application/fhir+json"),
    ("", None, "application/fhir+json"),
    ("application/fhir+json;fhirVersion=4.0", None, "application/fhir+json"),
    ("application/json+fhir", None, "application/fhir+json"),
    ("text/html, application/json;q=0.9, */*;q=0.8", None, "application/json"),
    ("application/xml;q=1, application/fhir+json;q=0.1", None, "application/fhir+json"),
    ("application/xml", "json", "application/fhir+json"),
    (None, "application/json", "application/json"),
])
def test_json_answers(accept, fmt, expected):
    assert response_type(accept, fmt) == expected


@pytest.mark.parametrize("accept,fmt", [
    ("application/fhir+xml", None), ("text/turtle", None), ("application/json;q=0", None),
    (None, "xml"), (None, "ttl"),
])
def test_406(accept, fmt):
    with pytest.raises(FhirError) as caught:
        response_type(accept, fmt)
    assert caught.value.status == 406


@pytest.mark.parametrize("ctype", ["application/fhir+json", "application/json; charset=utf-8",
                                   "application/fhir+json;fhirVersion=4.0"])
def test_json_bodies_are_accepted(ctype):
    check_body_type(ctype)


@pytest.mark.parametrize("ctype", [None, "", "application/xml", "application/x-www-form-urlencoded"])
def test_other_bodies_are_415(ctype):
    with pytest.raises(FhirError) as caught:
        check_body_type(ctype)
    assert caught.value.status == 415
