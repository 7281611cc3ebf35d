"""Index extraction from the R4 SearchParameter definitions."""
from __future__ import annotations

import decimal
import pathlib
from typing import Any

from adapter.fhir.definitions import search_params
from adapter.fhir.extract import extract
from conftest import observation

ROOT = pathlib.Path(__file__).resolve().parent.parent


def rows_of(resource, kind, param):
    return [r[1:] for r in getattr(extract(resource), kind) if r[0] == param]


def test_compiled_paths_cover_nearly_every_parameter():
    total = sum(len(search_params(t)) for t in ("Patient", "Observation", "Procedure", "PlanDefinition"))
    engine = sum(1 for t in ("Patient", "Observation", "Procedure", "PlanDefinition")
                 for p in search_params(t).values() if p.paths is None)
    assert total > 100 and engine <= 3  # only Patient.deceased needs the FHIRPath engine here


def test_tokens_from_codeable_concepts_codings_identifiers_and_codes():
    obs = observation(identifier=[{"system": "urn:site", "value": "42"}],
                      category=[{"coding": [{"system": "urn:cat", "code": "survey"}], "text": "Survey"}])
    assert rows_of(obs, "token", "code") == [("http://loinc.org", "29463-7", None)]
    assert rows_of(obs, "token", "identifier") == [("urn:site", "42", None)]
    assert rows_of(obs, "token", "category") == [("urn:cat", "survey", "Survey")]
    assert rows_of(obs, "token", "status") == [(None, "final", None)]


def test_choice_elements_dates_and_periods():
    assert rows_of(observation(effectiveDateTime="2024-02"), "date", "date") == [
        ("2024-02-01T00:00:00.000000", "2024-02-29T23:59:59.999999")]
    assert rows_of(observation(effectivePeriod={"start": "2024-01-01"}), "date", "date") == [
        ("2024-01-01T00:00:00.000000", "9999-12-31T23:59:59.999999")]


def test_references_keep_type_and_id_and_resolve_filters_by_type():
    obs = observation(subject={"reference": "http://other.org/fhir/Group/g1"})
    assert rows_of(obs, "reference", "subject") == [("Group", "g1", "http://other.org/fhir/Group/g1")]
    assert rows_of(obs, "reference", "patient") == []  # subject.where(resolve() is Patient)
    assert rows_of(observation(), "reference", "patient") == [("Patient", "p1", "Patient/p1")]


def test_quantities_from_decimals():
    obs = observation(valueQuantity={"value": decimal.Decimal("6.30"), "system": "http://unitsofmeasure.org",
                                     "code": "kg", "unit": "kg"})
    assert rows_of(obs, "quantity", "value-quantity") == [(6.3, "http://unitsofmeasure.org", "kg", "kg")]


def test_strings_are_case_and_accent_folded():
    patient = {"resourceType": "Patient", "name": [{"family": "Müller", "given": ["Zoë", "Ann"]}]}
    assert sorted(rows_of(patient, "string", "name")) == [("ann",), ("muller",), ("zoe",)]


def test_where_filters_and_fhirpath_fallback():
    patient = {"resourceType": "Patient", "deceasedBoolean": False,
               "telecom": [{"system": "phone", "value": "555"}, {"system": "email", "value": "a@b.org"}]}
    assert rows_of(patient, "token", "email") == [("email", "a@b.org", None)]
    assert rows_of(patient, "token", "phone") == [("phone", "555", None)]
    assert rows_of(patient, "token", "deceased") == [(None, "false", None)]


def test_parameters_tried_only_where_their_elements_are() -> None:
    """extract tries only the parameters whose elements a resource has (_applicable, per set of
    top-level elements): the same rows as trying every parameter, on the official R4 examples and
    the four sites' golden outputs."""
    import glob

    from adapter.fhir import extract as ex
    from adapter.fhir import jsonio
    from adapter.fhir.definitions import SERVED_TYPES

    def every_parameter(resource: dict[str, Any]) -> ex.IndexRows:
        rows = ex.IndexRows()
        for code, param in ex.search_params(resource["resourceType"]).items():
            if param.type == "composite":
                ex._composite(rows, param, resource)
                continue
            for value, resolve in ex._values(resource, param):
                if param.type == "reference":
                    ex._reference(rows, code, value, resolve)
                elif param.type in ("token", "quantity", "date", "string"):
                    ex._component(rows, param.type, code, value)
                elif param.type == "uri" and isinstance(value, str):
                    rows.uri.append((code, value))
                elif param.type == "number" and isinstance(value, (int, float, decimal.Decimal)) \
                        and not isinstance(value, bool):
                    rows.number.append((code, float(value)))
        return ex._keys_cut(rows)

    resources = [jsonio.parse(pathlib.Path(f).read_bytes()) for f in sorted(glob.glob(str(ROOT / "fixtures/r4-examples/*.json")))]
    for f in sorted(glob.glob(str(ROOT / "mappings/sites/golden/*/expected.ndjson"))):
        resources += [jsonio.parse(line) for line in pathlib.Path(f).read_bytes().splitlines() if line.strip()]
    served = [r for r in resources if r.get("resourceType") in SERVED_TYPES]
    assert len(served) > 1000
    for resource in served:
        assert ex.extract(resource) == every_parameter(resource), resource.get("id")
