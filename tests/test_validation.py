"""The validator: official examples pass; each kind of bad resource names its element."""
from __future__ import annotations

import json

import pytest

from adapter.fhir.jsonio import parse
from adapter.fhir.validation import validate
from conftest import EXAMPLES, observation

OFFICIAL = sorted(EXAMPLES.glob("*.json"))


@pytest.mark.parametrize("path", OFFICIAL, ids=lambda p: p.stem)
def test_official_r4_examples_are_valid(path):
    assert validate(parse(path.read_bytes())) == []


def test_there_are_official_examples_of_every_served_type():
    from adapter.fhir.definitions import SERVED_TYPES
    types = {json.loads(p.read_text())["resourceType"] for p in OFFICIAL}
    assert set(SERVED_TYPES) <= types


BAD = [
    # (resource, expected expression, expected issue code)
    (observation(status="done"), "Observation.status", "code-invalid"),
    (observation(code={"text": ""}), "Observation.code.text", "value"),
    ({k: v for k, v in observation().items() if k != "status"}, "Observation.status", "required"),
    (observation(valueQuantity={"value": 1}, valueString="x"), "Observation.value[x]", "value"),
    (observation(effectiveDateTime="2020-13-01"), "Observation.effectiveDateTime", "value"),
    (observation(effectiveDateTime="2021-02-29"), "Observation.effectiveDateTime", "value"),
    (observation(valueQuantity={"value": "6.30"}), "Observation.valueQuantity.value", "value"),
    (observation(valueQuantity={"value": 1, "comparator": "~"}),
     "Observation.valueQuantity.comparator", "value"),
    (observation(colour="blue"), "Observation.colour", "structure"),
    (observation(component=[{"code": {"text": "a"}, "valueQuantity": {"value": True}}]),
     "Observation.component[0].valueQuantity.value", "value"),
    ({"resourceType": "PlanDefinition", "status": "draft", "subjectCanonical": "http://x"},
     "PlanDefinition.subjectCanonical", "structure"),
    ({"resourceType": "ActivityDefinition", "status": "active", "subjectCanonical": "http://x"},
     "ActivityDefinition.subjectCanonical", "structure"),
    ({"resourceType": "Procedure", "status": "done", "subject": {"reference": "Patient/1"}},
     "Procedure.status", "code-invalid"),
    ({"resourceType": "CarePlan", "status": "active", "intent": "wish",
      "subject": {"reference": "Patient/1"}}, "CarePlan.intent", "code-invalid"),
    ({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
      "clinicalStatus": {"coding": [{"system": "http://example.org", "code": "active"}]}},
     "Condition.clinicalStatus", "code-invalid"),
    ({"resourceType": "AdverseEvent", "actuality": "actual", "subject": {"reference": "Patient/1"},
      "severity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity",
                               "code": "grade-3"}]}}, "AdverseEvent.severity", "code-invalid"),
    ({"resourceType": "PlanDefinition", "status": "active",
      "action": [{"relatedAction": [{"actionId": "a", "relationship": "later"}]}]},
     "PlanDefinition.action[0].relatedAction[0].relationship", "code-invalid"),
    # contained resources against their own type's bindings ($apply's CarePlan holds its requests)
    ({"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/1"},
      "contained": [{"resourceType": "MedicationRequest", "id": "m", "status": "active", "intent": "wish",
                     "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/1"}}],
      "activity": [{"reference": {"reference": "#m"}}]}, "CarePlan.contained[0].intent", "code-invalid"),
    ({"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/1"},
      "contained": [{"resourceType": "RequestGroup", "id": "g", "status": "active", "intent": "plan",
                     "action": [{"id": "a", "title": "a"},
                                {"relatedAction": [{"actionId": "a", "relationship": "later"}]}]}],
      "activity": [{"reference": {"reference": "#g"}}]},
     "CarePlan.contained[0].action[1].relatedAction[0].relationship", "code-invalid"),
    ({"resourceType": "Patient", "id": "has space"}, "Patient.id", "value"),
    ({"resourceType": "Patient", "birthDate": "14/03/2019"}, "Patient.birthDate", "value"),
]


@pytest.mark.parametrize("resource,where,code", BAD, ids=[b[1] for b in BAD])
def test_bad_resources_are_reported_at_their_element(resource, where, code):
    issues = validate(resource)
    assert issues, "expected a problem"
    matching = [i for i in issues if i.expression == where]
    assert matching, [(i.expression, i.diagnostics) for i in issues]
    assert matching[0].code == code
    assert all(i.severity == "error" and i.diagnostics for i in issues)


def test_binding_message_names_value_set_and_value():
    [issue] = validate(observation(status="done"))
    assert "'done'" in issue.diagnostics
    assert "http://hl7.org/fhir/ValueSet/observation-status" in issue.diagnostics


def test_r4b_only_element_is_named_as_such():
    issues = validate({"resourceType": "PlanDefinition", "status": "draft",
                       "subjectCanonical": "http://x"})
    assert any("R4B" in i.diagnostics for i in issues)


@pytest.mark.parametrize("resource,message", [
    ([], "JSON object"),
    ({"status": "final"}, "resourceType"),
    ({"resourceType": "Appointment", "status": "proposed"}, "not served"),
])
def test_not_a_served_resource(resource, message):
    [issue] = validate(resource)
    assert message in issue.diagnostics


def test_expected_type_mismatch():
    [issue] = validate(observation(), expected_type="Patient")
    assert issue.expression == "resourceType"


def test_decimals_from_the_parser_validate():
    assert validate(parse(json.dumps(observation()).replace(
        '"status"', '"valueQuantity": {"value": 6.30}, "status"'))) == []


def test_shape_validator_checks_values_on_every_resource():
    """The model layer runs once per shape; bindings and the R4 schema still see every value."""
    from adapter.fhir.validation import ShapeValidator
    check = ShapeValidator()
    good = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "effectiveDateTime": "2025-01-02"}
    assert check(good) == []
    assert check({**good, "status": "done"})[0].expression == "Observation.status"  # binding
    assert check({**good, "effectiveDateTime": "2025-1-2"})  # the schema's date pattern
    assert check({**good, "effectiveDateTime": "2025-02-03"}) == []
    assert check({**good, "colour": "blue"})  # a new shape: fully validated


def test_empty_arrays_and_objects_are_refused_at_their_element():
    """FHIR JSON leaves an element without content out; neither the R4B models nor the R4
    schema refuse `[]` or `{}` (found by bench/validation.py's detection table)."""
    issues = validate({**observation(), "identifier": [], "code": {"coding": [{"system": "http://loinc.org",
                                                                                "code": "29463-7"}], "extension": []},
                       "meta": {}})
    where = {i.expression: i.diagnostics for i in issues}
    assert set(where) == {"Observation.identifier", "Observation.code.extension", "Observation.meta"}
    assert "empty array" in where["Observation.identifier"] and "empty object" in where["Observation.meta"]


def test_shape_validator_checks_integer_ranges_on_every_resource():
    """A range is a value, not a shape: a known shape with an integer past its range, or a
    positiveInt of 0 (an element the R4 schema names by reference), is refused every time."""
    from adapter.fhir.validation import ShapeValidator
    check = ShapeValidator()
    assert check({"resourceType": "Patient", "multipleBirthInteger": 2}) == []
    [issue] = check({"resourceType": "Patient", "multipleBirthInteger": 2 ** 40})
    assert issue.expression == "Patient.multipleBirthInteger" and "2147483647" in issue.diagnostics
    plan = {"resourceType": "PlanDefinition", "status": "active", "action": [{"timingTiming": {"repeat": {"count": 1}}}]}
    assert check(plan) == []
    plan["action"][0]["timingTiming"]["repeat"]["count"] = 0
    [issue] = check(plan)
    assert issue.expression == "PlanDefinition.action[0].timingTiming.repeat.count" and "positiveInt" in issue.diagnostics
    plan["action"][0]["timingTiming"]["repeat"]["count"] = parse(b"1.0")
    assert [i.expression for i in validate(plan)] == ["PlanDefinition.action[0].timingTiming.repeat.count"]


def test_a_decimal_choice_element_is_no_integer(client):
    """`valueDecimal` (an Extension's, a Parameters') is written out in the R4 schema with the
    decimal's pattern: it was taken for an integer, so 12.5 was refused as "not a FHIR integer"
    and 3e9 as out of range (found by the shape validator's differential test)."""
    body = b'{"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, "extension": [' \
           b'{"url": "http://x.org/dose-per-kg", "valueDecimal": 12.5}, {"url": "http://x.org/cells", ' \
           b'"valueDecimal": 3000000000}]}'
    assert validate(parse(body)) == []
    created = client.post("/fhir/Observation", data=body, content_type="application/fhir+json")
    assert created.status_code == 201, created.get_json()
    assert [e["valueDecimal"] for e in client.get(created.headers["Location"]).get_json()["extension"]] \
        == [12.5, 3000000000]
    # the integers written out keep their check
    assert [i.expression for i in validate(parse(body.replace(b'"valueDecimal": 12.5', b'"valueInteger": 12.5')))] \
        == ["Observation.extension[0].valueInteger"]


def test_an_empty_array_sent_over_rest_is_a_4xx_naming_the_element(client):
    answer = client.post("/fhir/Observation", json={**observation(), "identifier": []},
                         content_type="application/fhir+json")
    assert answer.status_code in (400, 422)
    outcome = answer.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Observation.identifier"]
    assert client.get("/fhir/Observation").get_json().get("total", 0) == 0


def test_shape_signature_tells_apart_what_the_model_layer_would():
    """The model layer is skipped only for a signature seen valid: keys, nesting, list lengths and
    scalar types all count, and a key cannot pass for structure (the old string shape's
    `{a:int,b:str}` could be spelled by one key holding ':' and ',')."""
    from adapter.fhir.validation import ShapeValidator, signature
    assert signature({"a": [1, "x"]}) == signature({"a": [5, "y"]})
    different = [({"a": 1}, {"a": True}), ({"a": 1}, {"a": 1.5}), ({"a": [1]}, {"a": [1, 2]}),
                 ({"a": {"b": 1}}, {"a": [{"b": 1}]}), ({"a": 1, "b": "x"}, {"b": "x", "a": 1}),
                 ({"a": {}, "b": 1}, {"a": {"b": 1}}), ({"a:int,b": "x"}, {"a": 1, "b": "x"}),
                 ({"a": [[1], 2]}, {"a": [[1, 2]]})]
    for one, other in different:
        assert signature(one) != signature(other), (one, other)
    check = ShapeValidator()
    good = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "effectiveDateTime": "2025-01-02"}
    assert check(good) == []
    assert check({**good, "code": {"text": 5}})  # same keys, a number where text is a string
    assert check({**good, "code": [{"text": "x"}]})  # a list where one is allowed
