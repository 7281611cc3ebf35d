"""The trial's results as FHIR: a Measure per outcome from `protocol build`, and MeasureReports
from Measure/[id]/$evaluate-measure that equal the calculation made by hand from the four sites'
raw exports (tests/test_outcomes.py: by_hand), on both stores."""
from __future__ import annotations

import statistics
from collections import defaultdict

import fhirpy
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scipy.stats import t as student_t
from werkzeug.serving import make_server
import threading

from adapter.fhir.validation import validate
from adapter.gateway.app import create_app
from adapter.mapping.ingest import ingest
from adapter.mapping.spec import load_mapping
from adapter.study.build import build_resources
from adapter.protocol.spec import SPECS
from adapter.protocol.spec import load_spec
from adapter.store import open_store
from conftest import ROOT, migrated_store
from r4schema import problems as r4_problems
from conftest import SITES_KEY as KEY
from test_outcomes import SITES, by_hand

ADL = "Measure/ucmsc-cp-adl/$evaluate-measure"
WHOLE = {"periodStart": "2000", "periodEnd": "2030"}
STATISTICS = "http://ucmsc-cp.example.org/fhir/StructureDefinition/change-statistics"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def four_sites_gateway(request, tmp_path_factory):
    """The protocol's definitions and the four sites' exports, ingested once a store; a gateway
    on it (Flask's test client) for the tests below, which write only MeasureReports."""
    with migrated_store(request, tmp_path_factory) as url:
        store = open_store(url)
        store.load(build_resources(load_spec(SPECS / "ucmsc-cp-v1.yaml")))
        for site in ("site-a", "site-b", "site-c", "site-d"):
            ingest(load_mapping(ROOT / "mappings" / "sites" / f"{site}.yaml"),
                   sorted((SITES / site).glob("export.*")), store, KEY)
        store.close()
        app = create_app({"DATABASE_URL": url, "EXPORT_DIR": str(tmp_path_factory.mktemp("exports"))})
        yield app
        app.extensions["fhir_store"].close()


def _statistics(element: dict) -> dict:
    return {part["url"]: next(v for k, v in part.items() if k.startswith("value"))
            for part in next(e for e in element["extension"] if e["url"] == STATISTICS)["extension"]
            if part["url"] != "missing"}


def _count(element: dict, code: str) -> int:
    return next(p["count"] for p in element["population"] if p["code"]["coding"][0]["code"] == code)


def test_protocol_build_emits_a_valid_measure_per_outcome_with_a_group_per_follow_up_visit():
    spec = load_spec(SPECS / "ucmsc-cp-v1.yaml")
    measures = {r["id"]: r for r in build_resources(spec) if r["resourceType"] == "Measure"}
    assert set(measures) == {f"ucmsc-cp-{key}" for key in spec.data["outcomes"]}
    for key, outcome in spec.data["outcomes"].items():
        measure = measures[f"ucmsc-cp-{key}"]
        assert validate(measure) == [] and r4_problems(measure) == []
        summary = outcome.get("summary", "change")
        if summary == "adverse-events":  # one group: children with an event / children enrolled
            assert len(measure["group"]) == 1 and measure["scoring"]["coding"][0]["code"] == "proportion"
            continue
        assert [g["code"]["coding"][0]["code"] for g in measure["group"]] == outcome["follow_up"]
        assert measure["scoring"]["coding"][0]["code"] == {"change": "continuous-variable", "shift": "cohort"}[summary]


@pytest.mark.parametrize("by", ["arm", "site"])
def test_population_report_equals_the_calculation_by_hand(four_sites_gateway, by):
    response = four_sites_gateway.test_client().get(f"/fhir/{ADL}", query_string=WHOLE)
    assert response.status_code == 200, response.get_data(as_text=True)
    report = response.get_json()
    assert validate(report) == [] and r4_problems(report) == []
    assert report["type"] == "summary"
    expected: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (visit, arm, site), changes in by_hand().items():
        expected[(visit, arm if by == "arm" else site)] += changes
    found = {}
    for group in report["group"]:
        visit = group["code"]["coding"][0]["code"]
        stratifier = next(s for s in group["stratifier"] if s["code"][0]["coding"][0]["code"] == by)
        for stratum in stratifier["stratum"]:
            found[(visit, stratum["value"]["text"])] = stratum
    assert set(found) == set(expected)
    for key, changes in expected.items():
        numbers = _statistics(found[key])
        assert numbers["n"] == _count(found[key], "measure-population") == len(changes), key
        assert numbers["mean"] == pytest.approx(statistics.fmean(changes)) == found[key]["measureScore"]["value"]
        if len(changes) > 1:
            sd = statistics.stdev(changes)
            half = student_t.ppf(0.975, len(changes) - 1) * sd / len(changes) ** 0.5
            assert numbers["sd"] == pytest.approx(sd, abs=1e-6)
            # the exact t interval as printed (six decimals): within its rounding, 5e-7
            assert (numbers["ci95-low"], numbers["ci95-high"]) == pytest.approx(
                (statistics.fmean(changes) - half, statistics.fmean(changes) + half), abs=5.01e-7), key
        assert numbers["median"] == pytest.approx(statistics.median(changes))


def test_individual_report_gives_the_childs_values_and_both_observations(four_sites_gateway):
    client = four_sites_gateway.test_client()
    summary = client.get(f"/fhir/{ADL}", query_string={**WHOLE, "reportType": "subject-list"}).get_json()
    month_1 = next(g for g in summary["group"] if g["code"]["coding"][0]["code"] == "month-1")
    listed = next(p for p in month_1["population"] if p["code"]["coding"][0]["code"] == "measure-population")
    lists = {c["id"]: c for c in summary["contained"]}
    patient = lists[listed["subjectResults"]["reference"][1:]]["entry"][0]["item"]["reference"]
    assert len(lists[listed["subjectResults"]["reference"][1:]]["entry"]) == listed["count"]
    report = client.get(f"/fhir/{ADL}", query_string={**WHOLE, "subject": patient}).get_json()
    assert report["type"] == "individual" and report["subject"]["reference"] == patient
    assert validate(report) == [] and r4_problems(report) == []
    group = next(g for g in report["group"] if g["code"]["coding"][0]["code"] == "month-1")
    values = _statistics(group)
    evaluated = [e["reference"] for e in report["evaluatedResource"]]
    observed = {}
    for reference in evaluated:
        observation = client.get(f"/fhir/{reference}").get_json()
        assert observation["subject"]["reference"] == patient
        observed[observation["valueQuantity"]["value"]] = reference
    assert values["baseline"] in observed and values["follow-up"] in observed
    assert group["measureScore"]["value"] == pytest.approx(values["follow-up"] - values["baseline"])


def test_a_patient_who_is_no_child_of_the_study_is_counted_nowhere_and_told_why(four_sites_gateway):
    client = four_sites_gateway.test_client()
    made = client.post("/fhir/Patient", json={"resourceType": "Patient"}, content_type="application/fhir+json").get_json()
    report = client.get(f"/fhir/{ADL}", query_string={**WHOLE, "subject": f"Patient/{made['id']}"}).get_json()
    assert validate(report) == [] and [g["code"]["coding"][0]["code"] for g in report["group"]] == \
        ["month-1", "month-3", "month-6", "month-12"]
    for group in report["group"]:
        assert _count(group, "initial-population") == 0 and "measureScore" not in group
        reason = group["extension"][0]["extension"][0]["extension"][0]
        assert reason == {"url": "reason", "valueString": "not a child of the study"}


def test_a_group_subject_counts_its_members_only(four_sites_gateway):
    client = four_sites_gateway.test_client()
    everyone = client.get(f"/fhir/{ADL}", query_string={**WHOLE, "reportType": "subject-list"}).get_json()
    lists = {c["title"]: [e["item"]["reference"] for e in c.get("entry", [])] for c in everyone["contained"]}
    chosen = lists["month-3-initial-population"][:5]
    group = {"resourceType": "Group", "type": "person", "actual": True,
             "member": [{"entity": {"reference": p}} for p in chosen]}
    made = client.post("/fhir/Group", json=group, content_type="application/fhir+json").get_json()
    report = client.get(f"/fhir/{ADL}", query_string={**WHOLE, "reportType": "subject-list",
                                                       "subject": f"Group/{made['id']}"}).get_json()
    contained = {c["title"]: [e["item"]["reference"] for e in c.get("entry", [])] for c in report["contained"]}
    assert contained["month-3-initial-population"] == chosen
    assert set(contained["month-3-measure-population"]) <= set(chosen)


def test_the_period_leaves_out_values_taken_on_other_days(four_sites_gateway):
    client = four_sites_gateway.test_client()
    whole = client.get(f"/fhir/{ADL}", query_string=WHOLE).get_json()
    nothing = client.get(f"/fhir/{ADL}", query_string={"periodStart": "1990-01-01", "periodEnd": "1990-12"}).get_json()
    for before, after in zip(whole["group"], nothing["group"], strict=True):
        assert _count(before, "measure-population") > 0 and _count(after, "measure-population") == 0
        assert _count(after, "initial-population") == _count(before, "initial-population")
        missing = [m for m in next(e for e in after["extension"] if e["url"] == STATISTICS)["extension"]
                   if m["url"] == "missing"]
        assert sum(p["valueInteger"] for m in missing for p in m["extension"] if p["url"] == "count") \
            == _count(after, "initial-population")
        reasons = {p["valueString"] for m in missing for p in m["extension"] if p["url"] == "reason"}
        assert "no baseline value (taken outside the report period); no follow-up value (taken outside the " \
            "report period)" in reasons


def test_persist_stores_the_report_by_post_only(four_sites_gateway):
    client = four_sites_gateway.test_client()
    refused = client.get(f"/fhir/{ADL}", query_string={**WHOLE, "persist": "true"})
    assert refused.status_code == 405 and refused.headers["Allow"] == "POST"
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2000-01-01"}, {"name": "periodEnd", "valueDate": "2030-12-31"},
        {"name": "persist", "valueBoolean": True}]}
    made = client.post(f"/fhir/{ADL}", json=body, content_type="application/fhir+json")
    assert made.status_code == 201, made.get_data(as_text=True)
    # a create's headers (they were missing): Location with the version, ETag, Last-Modified
    assert made.headers["Location"].endswith(f"/fhir/MeasureReport/{made.get_json()['id']}/_history/1")
    assert made.headers["ETag"] == 'W/"1"' and made.headers["Last-Modified"].endswith(" GMT")
    stored = client.get(f"/fhir/MeasureReport/{made.get_json()['id']}").get_json()
    assert stored["group"] == made.get_json()["group"]
    found = client.get("/fhir/MeasureReport", query_string={
        "measure": "http://ucmsc-cp.example.org/fhir/Measure/ucmsc-cp-adl|1.0.0"}).get_json()
    assert made.get_json()["id"] in {e["resource"]["id"] for e in found.get("entry", [])}


@pytest.mark.parametrize("query, status, where", [
    ({"periodEnd": "2030"}, 400, "periodStart"),
    ({"periodStart": "2000", "periodEnd": "2030-13"}, 400, "periodEnd"),
    ({"periodStart": "2030", "periodEnd": "2000"}, 400, "periodStart"),
    ({**WHOLE, "reportType": "everything"}, 400, "reportType"),
    ({**WHOLE, "reportType": "subject"}, 400, "subject"),
    ({**WHOLE, "reportType": "subject", "subject": "Group/x"}, 400, "subject"),
    ({**WHOLE, "subject": "Observation/x"}, 400, "subject"),
    ({**WHOLE, "subject": "Patient/nobody"}, 404, None),
    ({**WHOLE, "practitioner": "Practitioner/p"}, 400, "practitioner"),
])
def test_bad_inputs_get_an_operation_outcome_naming_the_parameter(four_sites_gateway, query, status, where):
    response = four_sites_gateway.test_client().get(f"/fhir/{ADL}", query_string=query)
    assert response.status_code == status, response.get_data(as_text=True)
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    if where:
        assert outcome["issue"][0]["expression"] == [where]


def test_a_measure_this_server_cannot_evaluate_is_422_and_an_unknown_one_404(four_sites_gateway):
    client = four_sites_gateway.test_client()
    made = client.post("/fhir/Measure", json={"resourceType": "Measure", "status": "draft"},
                       content_type="application/fhir+json").get_json()
    response = client.get(f"/fhir/Measure/{made['id']}/$evaluate-measure", query_string=WHOLE)
    assert response.status_code == 422 and response.get_json()["issue"][0]["expression"] == ["Measure.extension"]
    assert client.get("/fhir/Measure/nope/$evaluate-measure", query_string=WHOLE).status_code == 404


def test_the_capability_statement_lists_evaluate_measure(four_sites_gateway):
    statement = four_sites_gateway.test_client().get("/fhir/metadata").get_json()
    measure = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Measure")
    assert [o["name"] for o in measure["operation"]] == ["validate", "evaluate-measure"]


def test_a_fhir_client_evaluates_a_measure_over_real_http(four_sites_gateway):
    server = make_server("127.0.0.1", 0, four_sites_gateway, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        client = fhirpy.SyncFHIRClient(f"http://127.0.0.1:{server.server_port}/fhir")
        report = client.resource("Measure", id="ucmsc-cp-gmfm-88-total").execute(
            "$evaluate-measure", method="get", params={**WHOLE, "reportType": "population"})
        assert report["resourceType"] == "MeasureReport"
        assert [g["code"]["coding"][0]["code"] for g in report["group"]] == ["month-1", "month-3", "month-6", "month-12"]
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_a_cached_result_is_never_stale_nor_shared_between_views(four_sites_gateway):
    from adapter.auth.guard import GuardedRepository, access_of
    from adapter.outcomes.evaluate import evaluate_measure
    from datetime import date
    store = four_sites_gateway.extensions["fhir_store"]
    period = (date(2000, 1, 1), date(2030, 12, 31))
    before = evaluate_measure(store, "ucmsc-cp-adl", "subject-list", None, period)
    site_a = evaluate_measure(GuardedRepository(store, access_of("a", "site-a", "system/*.rs")), "ucmsc-cp-adl",
                              "subject-list", None, period)
    listed = {c["title"]: [e["item"]["reference"] for e in c.get("entry", [])] for c in site_a["contained"]}
    assert listed["month-1-initial-population"] and all(
        p.startswith("Patient/site-a-") for p in listed["month-1-initial-population"])
    everyone = {c["id"]: c for c in before["contained"]}
    titled = {c["title"]: c for c in before["contained"]}
    assert len(titled["month-1-initial-population"]["entry"]) > len(listed["month-1-initial-population"])
    # a write changes a follow-up value: the next report has it, not the cached one
    group = next(g for g in before["group"] if g["code"]["coding"][0]["code"] == "month-1")
    patient = everyone[group["population"][1]["subjectResults"]["reference"][1:]]["entry"][0]["item"]["reference"]
    child = evaluate_measure(store, "ucmsc-cp-adl", "subject", patient, period)
    month_1 = next(g for g in child["group"] if g["code"]["coding"][0]["code"] == "month-1")
    follow_up = next(r["reference"] for r in child["evaluatedResource"]
                     if _value_of(store, r["reference"]) == _statistics(month_1)["follow-up"])
    observation = _read(store, follow_up)
    observation["valueQuantity"]["value"] += 10
    store.update(observation)
    after = evaluate_measure(store, "ucmsc-cp-adl", "population", None, period)
    mean = next(_statistics(g)["mean"] for g in after["group"] if g["code"]["coding"][0]["code"] == "month-1")
    n = _statistics(group)["n"]
    assert mean == pytest.approx(_statistics(group)["mean"] + 10 / n)
    observation["valueQuantity"]["value"] -= 10
    store.update(observation)


def _read(store, reference: str) -> dict:
    import json
    kind, rid = reference.split("/")
    return json.loads(store.read(kind, rid).data)


def _value_of(store, reference: str):
    return _read(store, reference)["valueQuantity"]["value"]


def test_a_scan_at_once_gives_the_same_pages_as_one_by_one(four_sites_gateway):
    from adapter.fhir.search import parse_search
    store = four_sites_gateway.extensions["fhir_store"]
    request = parse_search("Observation", [("code", "http://loinc.org|96761-2"), ("_count", "7")])
    by_page = [[e.id for e in page] for page in store.scan(request)]
    at_once = [[e.id for e in page] for page in store.scan(request, at_once=True)]
    assert at_once == by_page and len(by_page) > 3 and all(len(p) == 7 for p in at_once[:-1])


_INPUT = st.sampled_from(["2026", "2026-02", "2026-02-30", "0000", "9999-12-31", "2020-1-1", "", " ", "%00", "population",
                          "subject-list", "subject", "Patient/site-a-A0001", "Patient/nobody", "Group/x", "Patient/",
                          "Patient/a/b", "true", "false", "TRUE", "x" * 300]) | st.text(max_size=8)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs=st.dictionaries(st.sampled_from(["periodStart", "periodEnd", "reportType", "subject", "persist"]),
                              _INPUT, max_size=5), post=st.booleans())
def test_evaluate_measure_answers_any_input_with_a_report_or_an_outcome(four_sites_gateway, inputs, post):
    client = four_sites_gateway.test_client()
    if post:
        body = {"resourceType": "Parameters", "parameter": [{"name": k, "valueString": v} for k, v in inputs.items()
                                                            if k != "persist"]}
        response = client.post(f"/fhir/{ADL}", json=body, content_type="application/fhir+json")
    else:
        response = client.get(f"/fhir/{ADL}", query_string=inputs)
    assert response.status_code < 500, response.get_data(as_text=True)
    kind = response.get_json()["resourceType"]
    assert kind == ("MeasureReport" if response.status_code == 200 else "OperationOutcome")


def _stratum_count(stratum: dict, code: str) -> int:
    return next(p["count"] for p in stratum["population"] if p["code"]["coding"][0]["code"] == code)


def test_the_modified_ashworth_report_is_the_shift_table_by_hand(four_sites_gateway):
    from test_outcomes_measures import mas_by_hand
    report = four_sites_gateway.test_client().get("/fhir/Measure/ucmsc-cp-mas/$evaluate-measure",
                                                  query_string=WHOLE).get_json()
    assert validate(report) == [] and r4_problems(report) == [] and report["type"] == "summary"
    group = next(g for g in report["group"] if g["code"]["coding"][0]["code"] == "month-6")
    pairs, _ = mas_by_hand("month-6")
    shift = next(s for s in group["stratifier"] if s["code"][0]["coding"][0]["code"] == "shift")
    table = {(s["component"][0]["value"]["text"], s["component"][1]["value"]["text"]):
             _stratum_count(s, "measure-population") for s in shift["stratum"]}
    assert len(table) == 36 and {k: v for k, v in table.items() if v} == dict(pairs)
    assert _count(group, "measure-population") == sum(pairs.values())
    by_arm = next(s for s in group["stratifier"] if s["code"][0]["coding"][0]["code"] == "arm-shift")
    assert sum(_stratum_count(s, "measure-population") for s in by_arm["stratum"]) == sum(pairs.values())
    refused = four_sites_gateway.test_client().get("/fhir/Measure/ucmsc-cp-mas/$evaluate-measure",
                                                   query_string={**WHOLE, "reportType": "subject-list"})
    assert refused.status_code == 400 and refused.get_json()["issue"][0]["expression"] == ["reportType"]


def test_the_adverse_event_report_is_the_count_by_hand(four_sites_gateway):
    from test_outcomes_measures import adverse_events_by_hand
    client = four_sites_gateway.test_client()
    report = client.get("/fhir/Measure/ucmsc-cp-adverse-events/$evaluate-measure", query_string=WHOLE).get_json()
    assert validate(report) == [] and r4_problems(report) == []
    (group,) = report["group"]
    by_grade, children, enrolled = adverse_events_by_hand()
    assert _count(group, "denominator") == _count(group, "initial-population") == sum(enrolled.values())
    grade = next(s for s in group["stratifier"] if s["code"][0]["coding"][0]["code"] == "grade")
    events = {s["value"]["text"]: next(p["valueInteger"] for p in s["extension"][0]["extension"] if p["url"] == "events")
              for s in grade["stratum"]}
    assert {k: v for k, v in events.items() if v} == dict(by_grade)
    assert {s["value"]["text"]: _stratum_count(s, "numerator") for s in grade["stratum"]
            if _stratum_count(s, "numerator")} == dict(children)
    assert group["measureScore"]["value"] == pytest.approx(_count(group, "numerator") / _count(group, "denominator"))
    by_site = next(s for s in group["stratifier"] if s["code"][0]["coding"][0]["code"] == "site")
    assert {s["value"]["text"]: _stratum_count(s, "denominator") for s in by_site["stratum"]} == enrolled
    child = client.get("/fhir/Measure/ucmsc-cp-adverse-events/$evaluate-measure",
                       query_string={**WHOLE, "subject": "Patient/site-a-A0001"}).get_json()
    assert child["type"] == "individual" and _count(child["group"][0], "denominator") == 1


def test_the_servers_own_audit_events_do_not_end_what_is_cached(four_sites_gateway):
    """Every audited request writes an AuditEvent: counted as a write, nothing would stay cached."""
    store = four_sites_gateway.extensions["fhir_store"]
    before = store.generation()
    store.load([{"resourceType": "AuditEvent", "id": "audit-generation-probe", "recorded": "2026-11-30T00:00:00Z",
                 "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
                 "agent": [{"requestor": True, "who": {"display": "probe"}}], "source": {"observer": {"display": "x"}}}])
    assert store.generation() == before
    made = store.create({"resourceType": "CodeSystem", "status": "draft", "content": "not-present"})
    assert store.generation() != before
    store.delete("CodeSystem", made.id)


def test_a_reader_who_may_not_read_the_protocol_is_refused_not_given_unchecked_windows(four_sites_gateway):
    from adapter.auth.guard import GuardedRepository, access_of
    from adapter.fhir.outcomes import FhirError
    from adapter.outcomes.evaluate import evaluate_measure
    from datetime import date
    narrow = GuardedRepository(four_sites_gateway.extensions["fhir_store"], access_of(
        "narrow", None, "system/Measure.r system/ResearchSubject.rs system/Observation.rs system/Encounter.rs"))
    with pytest.raises(FhirError) as refused:
        evaluate_measure(narrow, "ucmsc-cp-adl", "population", None, (date(2000, 1, 1), date(2100, 1, 1)))
    assert refused.value.status == 403


def test_a_child_report_of_a_per_muscle_outcome_has_a_stratum_per_muscle(four_sites_gateway):
    report = four_sites_gateway.test_client().get("/fhir/Measure/ucmsc-cp-mrc/$evaluate-measure", query_string={
        **WHOLE, "subject": "Patient/site-a-A0001"}).get_json()
    assert validate(report) == [] and r4_problems(report) == []
    visits = [g["code"]["coding"][0]["code"] for g in report["group"]]
    assert len(visits) == len(set(visits)) == 3
    muscles = report["group"][0]["stratifier"][0]["stratum"]
    assert len(muscles) > 1 and len({m["value"]["text"] for m in muscles}) == len(muscles)
    assert _count(report["group"][0], "initial-population") == len(muscles)


def test_a_group_without_members_gets_groups_of_zeros_not_empty_arrays(four_sites_gateway):
    client = four_sites_gateway.test_client()
    made = client.post("/fhir/Group", json={"resourceType": "Group", "type": "person", "actual": True},
                       content_type="application/fhir+json").get_json()
    for measure in ("adl", "mas", "adverse-events"):
        report = client.get(f"/fhir/Measure/ucmsc-cp-{measure}/$evaluate-measure",
                            query_string={**WHOLE, "subject": f"Group/{made['id']}", "reportType": "population"}).get_json()
        assert report["group"] and all(_count(g, "initial-population") == 0 for g in report["group"]), measure
        assert validate(report) == [] and r4_problems(report) == []


def test_a_measure_written_by_hand_with_odd_values_is_a_422_and_one_without_url_evaluates(four_sites_gateway):
    client = four_sites_gateway.test_client()
    measure = client.get("/fhir/Measure/ucmsc-cp-adl").get_json()
    odd = {**measure, "id": "odd"}
    odd["extension"] = [{**measure["extension"][0], "extension": [
        {"url": "follow-up", "valueInteger": 3} if p["url"] == "follow-up" else p
        for p in measure["extension"][0]["extension"]]}]
    assert client.put("/fhir/Measure/odd", json=odd, content_type="application/fhir+json").status_code < 300
    answer = client.get("/fhir/Measure/odd/$evaluate-measure", query_string=WHOLE)
    assert answer.status_code == 422 and answer.get_json()["issue"][0]["expression"] == ["Measure.extension"]
    plain = {k: v for k, v in measure.items() if k not in ("url", "version", "meta")}
    plain["id"] = "no-url"
    assert client.put("/fhir/Measure/no-url", json=plain, content_type="application/fhir+json").status_code < 300
    answer = client.get("/fhir/Measure/no-url/$evaluate-measure", query_string=WHOLE)
    assert answer.status_code == 200 and answer.get_json()["measure"] == "Measure/no-url"


def test_built_measures_keep_invariant_mea_1():
    """A stratifier is a code and criteria, or components alone (R4 mea-1)."""
    for measure in (r for r in build_resources(load_spec(SPECS / "ucmsc-cp-v1.yaml")) if r["resourceType"] == "Measure"):
        for group in measure["group"]:
            for stratifier in group.get("stratifier", []):
                assert bool({"code", "description", "criteria"} & set(stratifier)) != bool(stratifier.get("component"))


def test_a_result_is_built_with_the_cyclic_collector_paused_and_kept_until_a_write(four_sites_gateway):
    import gc
    from adapter.outcomes.memo import remember
    store = four_sites_gateway.extensions["fhir_store"]
    seen = []

    def compute():
        seen.append(gc.isenabled())
        return len(seen)
    assert gc.isenabled()
    assert remember(store, "probe", "k", compute) == remember(store, "probe", "k", compute) == 1
    assert seen == [False] and gc.isenabled()
    made = store.create({"resourceType": "CodeSystem", "status": "draft", "content": "not-present"})
    assert remember(store, "probe", "k", compute) == 2
    store.delete("CodeSystem", made.id)


def test_readers_asking_at_once_wait_for_one_build(four_sites_gateway):
    import threading
    import time
    from adapter.outcomes.memo import remember
    store = four_sites_gateway.extensions["fhir_store"]
    builds = []

    def compute():
        builds.append(1)
        time.sleep(0.3)
        return "built"
    answers = []
    readers = [threading.Thread(target=lambda: answers.append(remember(store, "probe-at-once", "k", compute)))
               for _ in range(5)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert answers == ["built"] * 5 and builds == [1]
    assert not store.derived()["being built"]  # nothing left behind per key


def test_a_ratio_measure_evaluates_to_the_modules_figures_and_an_unknown_summary_is_422(four_sites_gateway):
    """A ratio outcome's Measure carries its two codes (not the ratio's own LOINC code, which no
    site sends): its report equals adapter/outcomes/measures.py's; a summary this server does not
    compute is a 422, not a report of nothing."""
    from adapter.outcomes.measures import child_changes, outcomes_of, population
    client = four_sites_gateway.test_client()
    response = client.get("/fhir/Measure/ucmsc-cp-cd4-cd8-ratio/$evaluate-measure", query_string=WHOLE)
    assert response.status_code == 200, response.get_data(as_text=True)
    report = response.get_json()
    ratio = outcomes_of(load_spec(SPECS / "ucmsc-cp-v1.yaml"))["cd4-cd8-ratio"]
    store = four_sites_gateway.extensions["fhir_store"]
    rows = {r.visit: r for r in population(ratio, child_changes(store, ratio, "ucmsc-cp"))}
    for group in report["group"]:
        row = rows[group["code"]["coding"][0]["code"]]
        assert _statistics(group)["n"] == row.summary.n > 0
        assert _statistics(group)["mean"] == pytest.approx(row.summary.mean, abs=1e-6)
    measure = client.get("/fhir/Measure/ucmsc-cp-adl").get_json()
    for part in measure["extension"][0]["extension"]:
        if part["url"] == "summary":
            part["valueCode"] = "survival"
    measure["id"] = "ucmsc-cp-survival"
    assert client.put("/fhir/Measure/ucmsc-cp-survival", json=measure, content_type="application/fhir+json").status_code < 300
    refused = client.get("/fhir/Measure/ucmsc-cp-survival/$evaluate-measure", query_string=WHOLE)
    assert refused.status_code == 422 and "summary" in refused.get_json()["issue"][0]["diagnostics"]
