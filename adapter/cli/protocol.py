"""`fhir-adapter protocol ...`: build, load, apply and check the treatment protocol."""
from __future__ import annotations

import json
import pathlib
import sys
from datetime import date

import click

from adapter.cli.options import DB_OPTION
from adapter.fhir.outcomes import FhirError
from adapter.protocol.adherence import adherence, as_parameters
from adapter.protocol.apply import GROUP_ID, apply_plan
from adapter.study.build import bundle_bytes
from adapter.protocol.spec import Spec, SpecError, load_spec
from adapter.study.load import store_definitions
from adapter.store import open_store


def checked_spec(path: pathlib.Path) -> Spec:
    """The spec, or every problem of it on standard error and a non-zero exit."""
    try:
        return load_spec(path)
    except SpecError as error:
        for problem in error.problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"{path}: {len(error.problems)} problem(s) in the spec") from None


@click.group()
def protocol() -> None:
    """The treatment protocol: build its FHIR definitions, load them, plan and check a child."""


@protocol.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="Write the Bundle here instead of standard output.")
def build(spec: pathlib.Path, output: pathlib.Path | None) -> None:
    """Build the FHIR Bundle of a protocol spec (the same bytes every time)."""
    data = bundle_bytes(checked_spec(spec))
    if output:
        output.write_bytes(data)
        click.echo(f"wrote {output} ({len(data):,} bytes)", err=True)
    else:
        sys.stdout.buffer.write(data)


@protocol.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@DB_OPTION
def load(spec: pathlib.Path, db: str) -> None:
    """Validate a spec's definitions and store them (updates in place when loaded again)."""
    store = open_store(db)
    try:
        total, written = store_definitions(store, checked_spec(spec))
    finally:
        store.close()
    click.echo(f"{total} protocol resources stored from {spec} ({total - written} unchanged)")


@protocol.command("apply")
@click.option("--plan", "plan_id", required=True, help="Protocol PlanDefinition id, e.g. ucmsc-cp-arm-1.")
@click.option("--subject", required=True, help="The child, as Patient/ID.")
@click.option("--start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Date of the first injection.")
@click.option("--persist", is_flag=True, help="Store the CarePlan and create or update the ResearchSubject.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the CarePlan as FHIR JSON (its RequestGroup and requests contained).")
@DB_OPTION
def apply_command(plan_id: str, subject: str, start, persist: bool, as_json: bool, db: str) -> None:  # type: ignore[no-untyped-def]
    """PlanDefinition/$apply: the dated visits of one child's course, each injection's route and dose."""
    store = open_store(db)
    try:
        care_plan = apply_plan(store, plan_id, subject, start.date(), persist)
    except FhirError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(care_plan, indent=1, default=str))
        return
    click.echo(f"{care_plan['title']} for {subject}, first injection {start.date()}")
    click.echo(f"{'visit':<58}{'target':>12}{'window':>26}")
    contained = {r["id"]: r for r in care_plan["contained"]}
    for visit in contained[GROUP_ID]["action"]:
        timing = visit["timingTiming"]
        bounds = timing["repeat"]["boundsPeriod"]
        click.echo(f"{visit['title']:<58}{timing['event'][0]:>12}"
                   f"{bounds['start'] + ' .. ' + bounds['end']:>26}")
        for step in visit["action"]:  # an injection's route and dose, as its request carries them
            for dosage in contained[step["resource"]["reference"][1:]].get("dosageInstruction", []):
                route = ", ".join(c.get("display") or c["code"] for c in dosage.get("route", {}).get("coding", []))
                doses = [d["doseQuantity"] for d in dosage.get("doseAndRate", []) if "doseQuantity" in d]
                given = "; ".join(f"{d['value']} {d.get('code', d.get('unit', ''))}" for d in doses)
                click.echo(f"  {step['title']}: {route}, {given}")


@protocol.command("adherence")
@click.argument("subject_id")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="Judge as of this date (default today).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as a FHIR Parameters resource.")
@DB_OPTION
def adherence_command(subject_id: str, as_of, as_json: bool, db: str) -> None:  # type: ignore[no-untyped-def]
    """ResearchSubject/$adherence: each planned activity as done, late, wrong route, missing..."""
    day = as_of.date() if as_of else date.today()
    store = open_store(db)
    try:
        findings = adherence(store, subject_id, day)
    except FhirError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(as_parameters(subject_id, day, findings), indent=1, default=str))
        return
    click.echo(f"{'visit':<10}{'activity':<28}{'code':<26}{'status':<20}{'planned':>11}{'actual':>12}{'days':>6}")
    for f in findings:
        code = f.code[1] if f.code else "-"
        click.echo(f"{f.visit:<10}{f.activity.removeprefix('ucmsc-cp-'):<28}{code:<26}{f.status:<20}"
                   f"{str(f.planned or '-'):>11}{str(f.actual or '-'):>12}{f.days_outside or '':>6}")
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.status] = counts.get(f.status, 0) + 1
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
