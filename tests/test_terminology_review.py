"""What a review of the terminology operations found, each kept as a test: a hierarchy index
that grew with the square of a parent's children (one request body could hold a worker for
minutes), inputs R4 defines that were accepted and not honoured, `reverse` not turning
`source` and `target` round, a canonical url|version taken as the system, and a code system
held in part answered as if whole."""
from __future__ import annotations

import json

import pytest

from adapter.fhir.outcomes import FhirError
from adapter.terminology import concepts
from adapter.terminology.concepts import Concepts
from terminology_helpers import FHIR, GENDER, LIMBS, call, one, params, value_set, vs_url
from test_terminology import terminology  # noqa: F401  (a fixture)
from test_terminology_translate import S, T, matches

CORE_STATUS = "http://hl7.org/fhir/ValueSet/observation-status"
STATUS = "http://hl7.org/fhir/observation-status"


def test_many_children_of_one_parent_are_indexed_once_each():
    wide = {"resourceType": "CodeSystem", "url": "http://example.org/wide", "concept": [
        {"code": "root", "concept": [{"code": f"c{i}"} for i in range(40_000)]}]}
    index = Concepts.of(wide)
    assert len(index.children["root"]) == 40_000 and index.parents["c39999"] == ["root"]
    assert index.descendants("root") == {f"c{i}" for i in range(40_000)}


def test_a_code_system_past_the_size_limit_is_refused(monkeypatch):
    monkeypatch.setattr(concepts, "MAX_CONCEPTS", 50)
    big = {"resourceType": "CodeSystem", "url": "http://example.org/big",
           "concept": [{"code": f"c{i}"} for i in range(51)]}
    with pytest.raises(FhirError) as refused:
        Concepts.of(big)
    assert refused.value.status == 422 and refused.value.issues[0].code == "too-costly"
    assert Concepts.of(big | {"concept": big["concept"][:50]}).by_code  # at the limit: indexed


def test_a_dependency_given_as_parts_is_refused_by_name(http, live, terminology):  # noqa: F811
    body = params(("system", "Uri", GENDER), ("code", "Code", "male"))
    body["parameter"].append({"name": "dependency", "part": [{"name": "element", "valueUri": "x"}]})
    response = http.post(f"{live}/ConceptMap/$translate", data=json.dumps(body), headers=FHIR)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["dependency"]


def test_translate_honours_the_source_version_and_reverse_turns_source_and_target_round(http, live, store):
    versioned = {"resourceType": "ConceptMap", "id": "versioned", "url": "http://example.org/fhir/ConceptMap/versioned",
                 "status": "active", "sourceUri": "http://x/vs/src", "targetUri": "http://x/vs/tgt",
                 "group": [{"source": S, "sourceVersion": "1", "target": T, "element": [
                     {"code": "a", "target": [{"code": "b", "equivalence": "wider"}]}]}]}
    store.load([versioned])
    url = f"{live}/ConceptMap/$translate"
    assert one(call(http, url, {"system": S, "code": "a", "version": "1"}), "result") is True
    assert one(call(http, url, {"system": S, "code": "a", "version": "2"}), "result") is False
    back = call(http, url, {"system": T, "code": "b", "reverse": "true", "source": "http://x/vs/tgt|3"})
    assert matches(back) == [("narrower", S, "a", versioned["url"])]
    assert one(call(http, url, {"system": T, "code": "b", "reverse": "true", "source": "http://x/vs/src"}),
               "result") is False
    assert one(call(http, url, {"system": T, "code": "b", "reverse": "true", "target": "http://x/vs/src"}),
               "result") is True


def test_code_system_validate_code_takes_a_canonical_with_its_version_and_abstract(http, live, terminology):  # noqa: F811
    url = f"{live}/CodeSystem/$validate-code"
    assert one(call(http, url, {"url": f"{GENDER}|4.0.1", "code": "male"}), "result") is True
    other = call(http, url, {"url": f"{GENDER}|3.0.2", "code": "male"}, status=404)
    assert other["issue"][0]["expression"] == ["url"]
    assert one(call(http, url, {"url": LIMBS, "code": "limb"}), "result") is True
    abstract = call(http, url, {"url": LIMBS, "code": "limb", "abstract": "false"})
    assert one(abstract, "result") is False and "abstract" in one(abstract, "message")
    assert call(http, url, {"url": LIMBS, "code": "limb", "abstract": "banana"}, status=400)["issue"][0][
        "expression"] == ["abstract"]


def test_value_set_validate_code_holds_the_system_version(http, live, terminology):  # noqa: F811
    url = f"{live}/ValueSet/$validate-code"
    same = {"url": CORE_STATUS, "system": STATUS, "code": "final"}
    assert one(call(http, url, same | {"systemVersion": "4.0.1"}), "result") is True
    older = call(http, url, same | {"systemVersion": "3.0.2"})
    assert one(older, "result") is False and "4.0.1" in one(older, "message")


def test_expand_leaves_out_abstract_codes_when_not_for_a_user_interface(http, live, terminology):  # noqa: F811
    url = f"{live}/ValueSet/abstract-too/$expand"
    assert [c["code"] for c in call(http, url)["expansion"]["contains"]] == ["limb", "leg"]
    picked = call(http, url, {"excludeNotForUI": "true"})
    assert [c["code"] for c in picked["expansion"]["contains"]] == ["leg"] and picked["expansion"]["total"] == 1
    assert {"name": "excludeNotForUI", "valueBoolean": True} in picked["expansion"]["parameter"]


def test_a_code_system_held_in_part_is_said_so(http, live, store):
    part = {"resourceType": "CodeSystem", "id": "part", "url": "http://example.org/part", "status": "active",
            "content": "fragment", "concept": [{"code": "a", "display": "A"}]}
    store.load([part, value_set("over-part", [{"system": "http://example.org/part"}])])
    expanded = call(http, f"{live}/ValueSet/over-part/$expand")
    assert {"name": "fragment", "valueUri": "http://example.org/part"} in expanded["expansion"]["parameter"]
    unknown = call(http, f"{live}/ValueSet/$validate-code",
                   {"url": vs_url("over-part"), "system": "http://example.org/part", "code": "b"})
    assert one(unknown, "result") is False and "only part" in one(unknown, "message")


@pytest.mark.parametrize("name", ["abstract", "date"])
def test_a_post_parameter_with_a_name_alone_is_refused_by_name(http, live, terminology, name):  # noqa: F811
    """Found by a second review: {"name": "abstract"} (no value) was dropped before the check."""
    body = params(("url", "Uri", LIMBS), ("code", "Code", "limb"))
    body["parameter"].append({"name": name})
    response = http.post(f"{live}/CodeSystem/$validate-code", data=json.dumps(body), headers=FHIR)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == [name]
