"""`fhir-adapter outcomes`: the trial's results per follow-up visit: change from baseline, shift
tables of ordinal outcomes, adverse-event counts and rates."""
from __future__ import annotations

import csv
import pathlib
from typing import Any

import click

from adapter.cli.options import DB_OPTION
from adapter.outcomes.adverse_events import AE_COLUMNS, AdverseEventRow, adverse_event_rows
from adapter.outcomes.cohort import cohort
from adapter.outcomes.measures import COLUMNS, ChildChange, Outcome, Row, child_changes, outcomes_of, population
from adapter.outcomes.shifts import SHIFT_COLUMNS, ShiftRow, child_shifts, shift_table
from adapter.cli.protocol import checked_spec
from adapter.protocol.spec import SPECS
from adapter.private import open_private
from adapter.store import open_store

__all__ = ["outcomes_command"]


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@click.command("outcomes")
@click.option("--measure", "measures", multiple=True, metavar="KEY",
              help="An outcome of the protocol spec (adl, gmfm-88-total, mas, adverse-events, ...); repeat for "
                   "several. Default: all.")
@click.option("--by", type=click.Choice(["arm", "site"]), help="Stratify by the children's arm or site.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="Also write the tables as CSV: FILE for changes (one row per outcome, visit and group), "
                   "FILE's name + '-shift' and '-adverse-events' for the other summaries.")
@click.option("--children", "children_path", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="Also write each child's baseline, follow-up and change as CSV (pseudonymous ids).")
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              default=SPECS / "ucmsc-cp-v1.yaml", show_default=True, help="The protocol spec that declares the outcomes.")
@DB_OPTION
def outcomes_command(measures: tuple[str, ...], by: str | None, csv_path: pathlib.Path | None,
                     children_path: pathlib.Path | None, spec_path: pathlib.Path, db: str) -> None:
    """The trial's outcome measures at each follow-up visit. Change outcomes: n, mean change, SD,
    95% CI (Student's t), median and IQR. Shift outcomes (Modified Ashworth): baseline x
    follow-up category counts. Adverse events: events, children with one and the rate per
    children enrolled, by CTCAE grade, seriousness and causality. Missing values are counted with
    their reason, never imputed; values out of their visit's window are summarised apart.

    \b
    Examples:
      fhir-adapter outcomes
      fhir-adapter outcomes --measure adl --by arm
      fhir-adapter outcomes --measure mas --by site
      fhir-adapter outcomes --measure adverse-events --by arm --csv ae.csv
      fhir-adapter outcomes --by site --csv results.csv --children changes.csv
    """
    spec = checked_spec(spec_path)
    known = outcomes_of(spec)
    unknown = [m for m in measures if m not in known]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} (the spec has: {', '.join(known)})", param_hint="--measure")
    chosen = [known[m] for m in measures] if measures else list(known.values())
    study = spec.protocol["id"]
    store = open_store(db)
    changes: list[tuple[Outcome, list[ChildChange]]] = []
    shifts: list[ShiftRow] = []
    events: list[AdverseEventRow] = []
    children_rows: list[list[Any]] = []
    try:
        children = cohort(store, study)
        for outcome in chosen:
            if outcome.summary == "change":
                changes.append((outcome, child_changes(store, outcome, study, cohort=children)))
            elif outcome.summary == "shift":
                per_child = child_shifts(store, outcome, study, children)
                shifts += shift_table(outcome, per_child, by)
                children_rows += [[outcome.key, s.patient, s.arm, s.site, s.body_site, s.visit, s.baseline, s.follow_up,
                                   None, s.missing, s.baseline_observation, s.follow_up_observation,
                                   s.baseline_days_outside, s.follow_up_days_outside] for s in per_child]
            else:
                events += adverse_event_rows(store, study, by, children, outcome.key)
    finally:
        store.close()
    rows = [row for outcome, found in changes for row in population(outcome, found, by)]
    if rows:
        _print_changes(rows)
    for shift in shifts:
        _print_shift(shift)
    if events:
        _print_events(events)
    if csv_path:
        _write(csv_path, COLUMNS, [row.cells() for row in rows]) if rows else None
        if shifts:
            _write(_beside(csv_path, "shift"), SHIFT_COLUMNS, [c for s in shifts for c in s.cells()])
        if events:
            _write(_beside(csv_path, "adverse-events"), AE_COLUMNS, [c for e in events for c in e.cells()])
    if children_path:  # pseudonymous, yet per child: the owner's alone, like every file of identifiers
        with open_private(children_path, encoding="utf-8", newline="") as private:
            writer = csv.writer(private, lineterminator="\n")
            writer.writerow(["outcome", "patient", "arm", "site", "visit", "baseline", "follow_up", "change", "missing",
                             "baseline_observation", "follow_up_observation", "body_site",
                             "baseline_days_outside", "follow_up_days_outside"])
            for outcome, found in changes:
                writer.writerows([outcome.key, c.patient, c.arm, c.site, c.visit, c.baseline, c.follow_up, c.change,
                                  c.missing, c.baseline_observation, c.follow_up_observation, c.body_site,
                                  c.baseline_days_outside, c.follow_up_days_outside] for c in found)
            writer.writerows([r[0], r[1], r[2], r[3], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[4], r[12], r[13]]
                             for r in children_rows)


def _beside(path: pathlib.Path, name: str) -> pathlib.Path:
    return path.with_name(f"{path.stem}-{name}{path.suffix or '.csv'}")


def _write(path: pathlib.Path, columns: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def _print_changes(rows: list[Row]) -> None:
    shown = "{:<14} {:<9} {:<8} {:>4} {:>9} {:>9} {:>8} {:>20} {:>8} {:>16} {:>5} {:>9}"
    click.echo(shown.format("outcome", "visit", "group", "n", "missing", "mean", "sd", "95% CI", "median", "IQR",
                            "oow", "oow mean"))
    for row in rows:
        s, o = row.summary, row.out_of_window
        click.echo(shown.format(row.outcome, row.visit, row.group, s.n, sum(row.missing.values()), _f(s.mean), _f(s.sd),
                                f"{_f(s.ci_low)} to {_f(s.ci_high)}" if s.ci_low is not None else "-", _f(s.median),
                                f"{_f(s.q1)} to {_f(s.q3)}" if s.q1 is not None else "-", o.n, _f(o.mean)))


def _print_shift(row: ShiftRow) -> None:
    click.echo(f"\n{row.outcome} {row.visit} {row.group}: n {row.n} ({row.children} children), "
               f"out of window {row.n_out_of_window}, missing {sum(row.missing.values())}"
               + "".join(f"; {reason}: {n}" for reason, n in sorted(row.missing.items())))
    width = max(6, *(len(c) + 2 for c in row.categories))
    click.echo("baseline \\ follow-up".ljust(22) + "".join(c.rjust(width) for c in row.categories))
    for b in row.categories:
        click.echo(b.ljust(22) + "".join(str(row.counts[(b, f)]).rjust(width) for f in row.categories))


def _print_events(rows: list[AdverseEventRow]) -> None:
    click.echo(f"\n{'outcome':<15} {'group':<8} {'enrolled':>8} {'events':>7} {'children':>8} {'rate':>6} "
               f"{'95% CI':>14}  by grade / seriousness / causality (events, children)")
    for r in rows:
        ci = f"{_f(r.rate_low)} to {_f(r.rate_high)}" if r.rate_low is not None else "-"
        detail = "; ".join(f"{c.dimension} {c.value}: {c.events}, {c.children}" for c in r.counts)
        click.echo(f"{r.outcome:<15} {r.group:<8} {r.enrolled:>8} {r.events:>7} {r.children:>8} {_f(r.rate):>6} "
                   f"{ci:>14}  {detail}")
