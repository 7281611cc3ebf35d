"""`fhir-adapter outcomes`: the trial's results, change from baseline per follow-up visit."""
from __future__ import annotations

import csv
import pathlib

import click

from adapter.cli_options import DB_OPTION
from adapter.outcomes.measures import COLUMNS, child_changes, outcomes_of, population
from adapter.protocol.cli import SPECS, _spec
from adapter.private import open_private
from adapter.store import open_store

__all__ = ["outcomes_command"]


@click.command("outcomes")
@click.option("--measure", "measures", multiple=True, metavar="KEY",
              help="An outcome of the protocol spec (adl, gmfm-88-total, ...); repeat for several. Default: all.")
@click.option("--by", type=click.Choice(["arm", "site"]), help="Stratify by the children's arm or site.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="Also write the table as CSV (one row per outcome, visit and group).")
@click.option("--children", "children_path", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="Also write each child's baseline, follow-up and change as CSV (pseudonymous ids).")
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              default=SPECS / "ucmsc-cp-v1.yaml", show_default=True, help="The protocol spec that declares the outcomes.")
@DB_OPTION
def outcomes_command(measures: tuple[str, ...], by: str | None, csv_path: pathlib.Path | None,
                     children_path: pathlib.Path | None, spec_path: pathlib.Path, db: str) -> None:
    """Change from baseline of each outcome measure at each follow-up visit: n, mean change, SD,
    95% CI (Student's t), median and IQR, and how many children miss a value and why (missing
    values are counted, never imputed).

    \b
    Examples:
      fhir-adapter outcomes
      fhir-adapter outcomes --measure adl --by arm
      fhir-adapter outcomes --by site --csv results.csv --children changes.csv
    """
    spec = _spec(spec_path)
    known = outcomes_of(spec)
    unknown = [m for m in measures if m not in known]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} (the spec has: {', '.join(known)})", param_hint="--measure")
    chosen = [known[m] for m in measures] if measures else list(known.values())
    store = open_store(db)
    try:
        results = [(outcome, child_changes(store, outcome, spec.protocol["id"])) for outcome in chosen]
    finally:
        store.close()
    rows = [row for outcome, changes in results for row in population(outcome, changes, by)]
    shown = "{:<14} {:<9} {:<8} {:>4} {:>9} {:>9} {:>8} {:>20} {:>8} {:>16}"
    click.echo(shown.format("outcome", "visit", "group", "n", "missing", "mean", "sd", "95% CI", "median", "IQR"))
    for row in rows:
        s = row.summary

        def f(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"
        click.echo(shown.format(row.outcome, row.visit, row.group, s.n, sum(row.missing.values()), f(s.mean), f(s.sd),
                                f"{f(s.ci_low)} to {f(s.ci_high)}" if s.ci_low is not None else "-", f(s.median),
                                f"{f(s.q1)} to {f(s.q3)}" if s.q1 is not None else "-"))
    if csv_path:
        with csv_path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(row.cells() for row in rows)
    if children_path:  # pseudonymous, yet per child: the owner's alone, like every file of identifiers
        with open_private(children_path, encoding="utf-8", newline="") as private:
            writer = csv.writer(private, lineterminator="\n")
            writer.writerow(["outcome", "patient", "arm", "site", "visit", "baseline", "follow_up", "change", "missing",
                             "baseline_observation", "follow_up_observation"])
            for outcome, changes in results:
                writer.writerows([outcome.key, c.patient, c.arm, c.site, c.visit, c.baseline, c.follow_up, c.change,
                                  c.missing, c.baseline_observation, c.follow_up_observation] for c in changes)
