"""The demo store (`fhir-adapter demo`, `make run`): the protocol's definitions, the demo
children, the five synthetic sites' exports through their mappings, a stored CarePlan for
every child on study, and the cohort Groups."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from adapter.demo_data import DEMO_DIR, DEMO_KEY, SITES_DIR
from adapter.exchange.cohorts import build_site_cohorts
from adapter.loading import LoadReport, load_files
from adapter.mapping.ingest import ingest
from adapter.mapping.spec import load_mapping, shipped_mappings
from adapter.protocol.apply import apply_plan, arm_protocol, read_json, search_all
from adapter.protocol.spec import SPECS, load_spec
from adapter.store import open_store
from adapter.store.repository import Repository
from adapter.study.load import store_definitions

__all__ = ["DemoReport", "load_demo"]


@dataclass
class DemoReport:
    protocols: list[tuple[str, int]] = field(default_factory=list)  # (spec file, resources)
    demo: LoadReport | None = None
    sites: list[tuple[str, str]] = field(default_factory=list)  # (site, ingest summary)
    plans: int = 0
    cohorts: list[str] = field(default_factory=list)  # Group/id (members)


def load_demo(db: str) -> DemoReport:
    report = DemoReport()
    store = open_store(db)
    try:
        for spec in sorted(SPECS.glob("*.yaml")):
            report.protocols.append((spec.name, store_definitions(store, load_spec(spec))[0]))
        report.demo = load_files(store, [DEMO_DIR])
        report.sites = _ingest_demo_sites(store)
        report.plans = _plan_demo_children(store)
        report.cohorts = [f"Group/{g['id']} ({g['quantity']})" for g in build_site_cohorts(store)
                          if g["resourceType"] == "Group"]
    finally:
        store.close()
    return report


def _ingest_demo_sites(store: Repository) -> list[tuple[str, str]]:
    """Every synthetic site's export through its mapping (their bad rows are rejected,
    as fixtures/sites/*/expected-rejections.csv says)."""
    done = []
    for spec_path in shipped_mappings():
        spec = load_mapping(spec_path)
        exports = sorted((SITES_DIR / spec.site).glob("export.*"))
        report = ingest(spec, exports, store, DEMO_KEY, workers=1)
        done.append((spec.site, f"{report.summary()} (the fixture's deliberately bad rows)"))
    return done


def _plan_demo_children(store: Repository) -> int:
    """A stored CarePlan for every demo child on study, from its arm and first injection date."""
    planned = 0
    for subject in search_all(store, "ResearchSubject", [("status", "on-study")]):
        study = read_json(store, "ResearchStudy", subject["study"]["reference"].split("/")[1])
        apply_plan(store, arm_protocol(study, subject["assignedArm"]), subject["individual"]["reference"],
                   date.fromisoformat(subject["period"]["start"]), persist=True)
        planned += 1
    return planned
