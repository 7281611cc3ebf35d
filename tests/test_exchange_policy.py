"""Exchange policies: the spec's checks (file:line), the rules' effects, and `exchange check`
over a real site store."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from adapter.cli import main
from adapter.exchange.anonymity import AGE_AT_ENROLMENT
from adapter.exchange.deidentify import Deidentifier
from adapter.exchange.policy import EXCHANGE_POLICY_SYSTEM, SpecError, load_policy
from adapter.exchange.view import POLICY_DIR
from adapter.fhir.sites import SITE_SYSTEM
from adapter.fhir.validation import validate
from conftest import ROOT
from exchange_helpers import _prepared

POLICY = load_policy(POLICY_DIR / "centre-v1.yaml")
SITE = {"system": SITE_SYSTEM, "code": "site-a"}


def _patient(**extra):
    return {"resourceType": "Patient", "id": "site-a-A0001", "meta": {"security": [SITE]},
            "identifier": [{"system": "http://ucmsc-cp.example.org/fhir/sid/site-a-subject", "value": "A0001"}],
            "gender": "female", "birthDate": "2019-05-22", **extra}


def test_the_policy_keeps_generalizes_pseudonymizes_and_redacts_the_rest():
    policy = Deidentifier(POLICY, b"k" * 32, lambda patient_id: "2025-06-19")
    out = policy.apply(_patient(name=[{"family": "Doe"}], telecom=[{"system": "phone", "value": "555"}],
                                text={"status": "generated", "div": "<div>Jo Doe</div>"},
                                _birthDate={"extension": [{"url": "x", "valueString": "22 May"}]},
                                newElementAddedLater="whatever"))
    assert out["birthDate"] == "2019" and "_birthDate" not in out  # the year, at most
    assert not {"name", "telecom", "text", "newElementAddedLater"} & set(out)  # nothing named: redacted
    assert out["gender"] == "female"
    assert out["identifier"] == [{"system": POLICY.pseudonym_system, "value": out["identifier"][0]["value"]}]
    assert "A0001" not in json.dumps(out) and out["id"].startswith("site-a-")
    assert {"url": AGE_AT_ENROLMENT, "valueAge": {"value": 6, "unit": "a", "system": "http://unitsofmeasure.org",
                                                  "code": "a"}} in out["extension"]  # 72 completed months
    assert {"system": EXCHANGE_POLICY_SYSTEM, "code": "centre-v1", "version": "1.0.0"} in out["meta"]["security"]
    assert SITE in out["meta"]["security"] and validate(out) == []
    # the same child, the same pseudonym and id, every time; another key, others
    assert policy.apply(_patient()) == {k: v for k, v in out.items()}
    other = Deidentifier(POLICY, b"o" * 32).apply(_patient())
    assert other["id"] != out["id"] and other["identifier"] != out["identifier"]


def test_references_follow_the_re_keyed_ids_and_only_a_sites_data_leaves():
    policy = Deidentifier(POLICY, b"k" * 32)
    patient = policy.apply(_patient())
    observation = policy.apply({
        "resourceType": "Observation", "id": "site-a-A0001-weight", "meta": {"security": [SITE]},
        "status": "final", "code": {"text": "weight"}, "subject": {"reference": "Patient/site-a-A0001"},
        "note": [{"text": "mother says he ate well"}], "performer": [{"display": "Dr Who"}],
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy",
                       "valueReference": {"reference": "ResearchStudy/ucmsc-cp"}}]})
    assert observation["subject"] == {"reference": f"Patient/{patient['id']}"}
    # however the reference is written (absolute, versioned), it leaves as the shared id alone
    for written in ("https://site-a.example.org/fhir/Patient/site-a-A0001", "Patient/site-a-A0001/_history/3",
                    "Patient/site-a-A0001/_history/"):
        shared = policy.apply({"resourceType": "Observation", "id": "site-a-x", "meta": {"security": [SITE]},
                               "status": "final", "code": {"text": "w"}, "subject": {"reference": written}})
        assert shared["subject"] == {"reference": f"Patient/{patient['id']}"}, written
    assert observation["extension"][0]["valueReference"] == {"reference": "ResearchStudy/ucmsc-cp"}  # not re-keyed
    assert "note" not in observation and "performer" not in observation
    # a protocol definition, an unlabelled resource, a type no rule names: none leaves
    assert policy.apply({"resourceType": "PlanDefinition", "id": "p", "status": "active"}) is None
    assert policy.apply({**_patient(), "meta": {}}) is None
    assert policy.apply({"resourceType": "AuditEvent", "id": "a", "meta": {"security": [SITE]}}) is None
    provenance = policy.apply({"resourceType": "Provenance", "id": "site-a-prov", "meta": {"security": [SITE]},
                               "target": [{"reference": "Patient/site-a-A0001"}], "recorded": "2026-01-01T00:00:00Z",
                               "agent": [{"who": {"display": "fhir-adapter mapping"}}],
                               "entity": [{"role": "source", "what": {"display": "site-a input.csv line 2"}}]})
    assert "entity" not in provenance and provenance["target"] == [{"reference": f"Patient/{patient['id']}"}]


@pytest.mark.parametrize("change, message", [
    ({"path": "Patient.birthdate", "action": "keep"}, "birthdate is not an element of Patient"),
    ({"path": "Observation.value[x]", "action": "generalize"}, "'to' is a required property"),
    ({"path": "Patient.gender", "action": "keep", "to": "year"}, "rules["),
    ({"path": "Patient.gender", "action": "shred"}, "action"),
    ({"path": "Condition.note", "action": "keep"}, "holds free text (Annotation), needs its reason (why:)"),
    ({"path": "Observation.code.text", "action": "keep"}, "holds free text (string), needs its reason (why:)"),
])
def test_a_bad_policy_is_refused_with_its_file_and_line(tmp_path, change, message):
    text = (POLICY_DIR / "centre-v1.yaml").read_text()
    rule = ", ".join(f"{k}: {json.dumps(v)}" for k, v in change.items())
    path = tmp_path / "centre-v1.yaml"
    path.write_text(text + f"  - {{{rule}}}\n")
    last_line = len(path.read_text().splitlines())
    with pytest.raises(SpecError) as error:
        load_policy(path)
    shown = str(error.value)
    assert f"centre-v1.yaml:{last_line}:" in shown
    assert message in shown


@pytest.mark.slow
def test_exchange_check_passes_the_policy_and_fails_one_that_keeps_birth_dates(tmp_path):
    db = tmp_path / "site-a.db"
    db.write_bytes(_prepared("site-a"))
    runner = CliRunner()
    args = ["--mapping", str(ROOT / "mappings/sites/site-a.yaml"), "--source",
            str(ROOT / "fixtures/sites/site-a/export.csv"), "--db", f"sqlite:///{db}",
            "--key-file", str(tmp_path / "exchange-key")]
    passed = runner.invoke(main, ["exchange", "check", "centre-v1", *args])
    assert passed.exit_code == 0, passed.output
    assert "nothing identifying survives" in passed.output and "Patient: 20 shared" in passed.output
    assert "PlanDefinition: 0 shared" in passed.output  # the protocol stays (it is no site's data)

    loose = tmp_path / "policies"
    loose.mkdir()
    text = (POLICY_DIR / "centre-v1.yaml").read_text()
    start = text.index("  - path: Patient.birthDate")
    end = text.index("  - {path: Patient.deceasedBoolean")
    (loose / "centre-v1.yaml").write_text(text[:start] + "  - {path: Patient.birthDate, action: keep}\n" + text[end:])
    failed = runner.invoke(main, ["exchange", "check", "centre-v1", "--policy-dir", str(loose), *args])
    assert failed.exit_code == 1
    assert "Patient.birthDate (keep, line" in failed.output and "finer than its year" in failed.output
    assert "2019-05-22" not in failed.output  # findings never show the value
    month = text[:start] + ("  - {path: Patient.birthDate, action: generalize, to: year-month, "
                            "age_at_enrolment: true}\n") + text[end:]
    (loose / "centre-v1.yaml").write_text(month)
    refused = runner.invoke(main, ["exchange", "check", "centre-v1", "--policy-dir", str(loose), *args])
    assert refused.exit_code == 1 and "(generalize to year-month, line" in refused.output


def test_clients_add_policy_names_a_policy_that_exists(tmp_path):
    from joserfc.jwk import ECKey
    jwks = tmp_path / "centre.jwks.json"
    key = ECKey.generate_key("P-384", parameters={"kid": "centre-1"}, private=True)
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'site.db'}"
    add = ["clients", "add", "centre", "--jwks", str(jwks), "--scope", "system/*.rs", "--db", db]
    bad = runner.invoke(main, [*add, "--policy", "no-such-policy"])
    assert bad.exit_code == 2 and "no-such-policy" in bad.output
    good = runner.invoke(main, [*add, "--policy", "centre-v1"])
    assert good.exit_code == 0 and "exchange policy centre-v1" in good.output
    assert "policy centre-v1" in runner.invoke(main, ["clients", "list", "--db", db]).output
