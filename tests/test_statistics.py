"""Student's t quantile and the 95% interval of a mean (adapter/outcomes/statistics.py) against
published values, not against the module's own arithmetic."""
from __future__ import annotations

import math
import statistics
from decimal import Decimal

import pytest

from adapter.outcomes.statistics import summarise, t_975

# The 0.975 quantile of Student's t (two-sided 5%), to six decimals: Abramowitz & Stegun, Handbook
# of Mathematical Functions, Table 26.10 (the same figures as R's qt(0.975, df) rounded); 31 and
# 1000 from R. A table of three decimals (3.182 at df 3) is off by up to 5e-4 here.
PUBLISHED = {
    1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 6: 2.446912, 7: 2.364624,
    8: 2.306004, 9: 2.262157, 10: 2.228139, 11: 2.200985, 12: 2.178813, 13: 2.160369, 14: 2.144787,
    15: 2.131450, 16: 2.119905, 17: 2.109816, 18: 2.100922, 19: 2.093024, 20: 2.085963, 21: 2.079614,
    22: 2.073873, 23: 2.068658, 24: 2.063899, 25: 2.059539, 26: 2.055529, 27: 2.051831, 28: 2.048407,
    29: 2.045230, 30: 2.042272, 31: 2.039513, 40: 2.021075, 60: 2.000298, 120: 1.979930, 1000: 1.962339,
}


@pytest.mark.parametrize("df", sorted(PUBLISHED))
def test_the_quantile_equals_the_published_value_to_six_decimals(df):
    # 1e-6: the published figure's own rounding (5e-7) plus no more than as much again
    assert t_975(df) == pytest.approx(PUBLISHED[df], abs=1e-6)


def test_the_closed_forms_at_one_and_two_degrees_of_freedom():
    # df 1 is Cauchy (tan), df 2 has t = (2p - 1) / sqrt(2p(1 - p)): exact, not from any table
    assert t_975(1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-12)
    assert t_975(2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), rel=1e-12)


def test_a_small_samples_interval_is_the_exact_t_interval_to_six_decimals():
    # site D's arm 2 at month 1 (ADL changes 0, 0, 0, 5): the issue's -2.72806 to 5.22806
    summary = summarise([Decimal(0), Decimal(0), Decimal(0), Decimal(5)])
    half = PUBLISHED[3] * statistics.stdev([0, 0, 0, 5]) / 2
    assert (summary.ci_low, summary.ci_high) == pytest.approx((1.25 - half, 1.25 + half), abs=1e-6)
    assert (round(summary.ci_low, 6), round(summary.ci_high, 6)) == (-2.728058, 5.228058)


def test_a_single_value_has_no_spread_and_no_interval():
    summary = summarise([Decimal("2.5")])
    assert (summary.n, summary.mean, summary.sd, summary.ci_low, summary.ci_high) == (1, 2.5, None, None, None)


@pytest.mark.parametrize("df", [0, -1])
def test_no_quantile_without_a_degree_of_freedom(df):
    with pytest.raises(ValueError):
        t_975(df)


@pytest.mark.parametrize("children, seed", [(4, 31), (6, 7)])
def test_a_generated_small_arms_measure_report_gives_the_exact_t_interval(tmp_path, monkeypatch, children, seed):
    """Site A's generator with a handful of children (df 1 to 4 at each visit), ingested and
    reported by $evaluate-measure: every interval is the exact t interval as printed, six decimals."""
    from scipy.stats import t as student_t

    from adapter.gateway.app import create_app
    from adapter.mapping.ingest import ingest
    from adapter.mapping.spec import load_mapping
    from adapter.outcomes.measures import child_changes, outcomes_of
    from adapter.study.build import build_resources
    from adapter.protocol.spec import SPECS
    from adapter.protocol.spec import load_spec
    from adapter.store import open_store
    from conftest import ROOT, SITES_KEY
    monkeypatch.syspath_prepend(str(ROOT / "fixtures" / "sites"))
    from generate import cohort
    from site_a import write_site_a

    write_site_a(cohort("site-a", children, seed), tmp_path / "site-a")
    url = f"sqlite:///{tmp_path / 'small.db'}"
    spec = load_spec(SPECS / "ucmsc-cp-v1.yaml")
    store = open_store(url)
    store.load(build_resources(spec))
    ingest(load_mapping(ROOT / "mappings" / "sites" / "site-a.yaml"), [tmp_path / "site-a" / "export.csv"],
           store, SITES_KEY)
    changes: dict[str, list[float]] = {}
    for change in child_changes(store, outcomes_of(spec)["adl"], "ucmsc-cp"):
        if change.change is not None and not change.out_of_window:
            changes.setdefault(change.visit, []).append(float(change.change))
    store.close()
    app = create_app({"DATABASE_URL": url, "EXPORT_DIR": str(tmp_path / "exports")})
    report = app.test_client().get("/fhir/Measure/ucmsc-cp-adl/$evaluate-measure",
                                   query_string={"periodStart": "2000", "periodEnd": "2030"}).get_json()
    app.extensions["fhir_store"].close()
    checked = 0
    for group in report["group"]:
        values = changes.get(group["code"]["coding"][0]["code"], [])
        if len(values) < 2:
            continue
        numbers = {part["url"]: next(v for k, v in part.items() if k.startswith("value")) for ext in group["extension"]
                   if ext["url"].endswith("/change-statistics") for part in ext["extension"]}
        mean, n = statistics.fmean(values), len(values)
        half = student_t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n)
        assert numbers["n"] == n, (group["code"], values)
        assert (numbers["ci95-low"], numbers["ci95-high"]) == pytest.approx((mean - half, mean + half), abs=5.01e-7)
        checked += 1
    assert checked >= 2  # at least two visits with an interval to compare
