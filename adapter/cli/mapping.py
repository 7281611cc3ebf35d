"""`fhir-adapter mapping check|test|coverage|concept-maps`, `fhir-adapter translate` and `fhir-adapter ingest`."""
from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

import click

from adapter.cli.options import DB_OPTION, NO_CHECK_REFERENCES
from adapter.mapping.reading import WORKBOOKS, check_files
from adapter.mapping.scopes import read_source
from adapter.mapping.ingest import ingest, missing_definitions, translate
from adapter.mapping.run import MappingReport
from adapter.mapping.sources import SourceRow
from adapter.mapping.spec import MappingSpec, load_mapping
from adapter.yamlspec import SpecError

__all__ = ["mapping", "translate_command", "ingest_command", "pseudonym_key"]

SPEC_ARG = click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
FILES_ARG = click.argument("files", nargs=-1, required=True,
                           type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
SHOWN = 20  # rejections printed; all are in the quarantine's rejections.csv


def _load(spec: pathlib.Path, header: list[str] | None = None) -> MappingSpec:
    try:
        return load_mapping(spec, header)
    except SpecError as exc:
        raise click.ClickException("the mapping has problems:\n" + "\n".join(exc.problems)) from None


def pseudonym_key(spec: MappingSpec, key_file: pathlib.Path | None) -> bytes:
    """The site's key for the MRN's keyed hash: --key-file, else the spec's environment variable."""
    if key_file is not None:
        key = key_file.read_bytes().strip()
    else:
        key = os.environ.get(spec.data["mapping"]["pseudonym_key_env"], "").encode()
    if len(key) < 16:
        raise click.UsageError(
            f"no pseudonym key for {spec.site}: set {spec.data['mapping']['pseudonym_key_env']} or pass "
            "--key-file (at least 16 bytes; the same key every time, or the same child gets a new identifier)")
    return key


KEY_FILE = click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
                        help="File holding the site's pseudonym key (default: the environment variable "
                             "the mapping names).")
WORKERS = click.option("--workers", type=int, default=lambda: os.cpu_count() or 1, show_default="CPU count",
                       help="Processes mapping and validating rows (1: all in this process).")
QUARANTINE = click.option("--quarantine", type=click.Path(file_okay=False, path_type=pathlib.Path),
                          help="Directory for rejections.csv and the rejected rows, in the source's "
                               "format, to fix and ingest again.")


def _report(report: MappingReport, quarantine: pathlib.Path | None) -> None:
    for warning in report.warnings[:SHOWN]:
        click.echo(f"warning {warning}", err=True)
    if len(report.warnings) > SHOWN:
        click.echo(f"... and {len(report.warnings) - SHOWN} more warnings", err=True)
    for rejection in report.rejections[:SHOWN]:
        click.echo(f"rejected {rejection}", err=True)
    hidden = report.rejected_any and len(report.rejections) - SHOWN
    if hidden > 0:
        click.echo(f"... and {hidden} more problems", err=True)
    if quarantine and (report.rejected_any or report.warnings):
        click.echo(f"rejected rows and reasons{' and warnings' if report.warnings else ''} in {quarantine}/",
                   err=True)
    click.echo(report.summary(), err=True)


@click.group()
def mapping() -> None:
    """Write, check and test site mappings (mappings/sites/*.yaml)."""


@mapping.command()
@SPEC_ARG
@click.option("--sample", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              help="An export of the site: every column the mapping reads must be in its header.")
def check(spec: pathlib.Path, sample: pathlib.Path | None) -> None:
    """Check a mapping: schema, catalogue concepts and codes, UCUM conversions, columns.

    Columns are checked against the REDCap data dictionary the mapping names, or the header
    of --sample (CSV); without either they are not checked, and a note says so. A workbook
    given as --sample is read as an ingest reads it: its kind, bounds, sheets and each table's
    header (the first problem is the error). Every problem is printed as file:line: key:
    message; warnings (a field that looks like an undeclared direct identifier) too, without
    failing.

    \b
    Examples:
      fhir-adapter mapping check mappings/sites/site-c.yaml --sample export.csv
      fhir-adapter mapping check mappings/sites/site-e.yaml --sample fixtures/sites/site-e/export.xlsx
    """
    header = None
    if sample is not None:
        loaded = _load(spec)
        if loaded.source["format"] in WORKBOOKS:  # its sheets and headers, as an ingest reads them
            check_files(loaded, [sample])
        elif loaded.tabular:
            first = next(iter(read_source(loaded, sample)), None)
            header = list(first.values) if isinstance(first, SourceRow) else []
    loaded = _load(spec, header)
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not loaded.tabular:
        click.echo("note: JSON field paths were not checked: run `fhir-adapter mapping coverage` on an export",
                   err=True)
    elif loaded.source["format"] in WORKBOOKS and sample is None:
        click.echo("note: a workbook's sheets and headers are checked when it is read: pass --sample WORKBOOK",
                   err=True)
    elif header is None and "dictionary" not in loaded.source and loaded.source["format"] not in WORKBOOKS:
        click.echo("note: columns were not checked (no REDCap dictionary in the mapping): pass --sample EXPORT",
                   err=True)
    cm = _checked_concept_map(loaded)
    click.echo(f"{spec}: ok ({len(loaded.rules)} rules, mapping {loaded.name} {loaded.version}, site {loaded.site}; "
               f"ConceptMap/{cm['id']}: {len(cm.get('group', []))} groups, "
               f"{sum(len(g['element']) for g in cm.get('group', []))} codes)")


def _checked_concept_map(loaded: MappingSpec) -> dict[str, Any]:
    """The mapping's ConceptMap, valid R4, or the problem at the mapping's header (a map's
    unknown target is refused where it is written, when the spec loads)."""
    from adapter.fhir.validation import validate
    from adapter.mapping.concept_maps import concept_map
    made = concept_map(loaded)
    issues = validate(made)
    if issues:
        raise click.ClickException(f"{loaded.where_key(('mapping', 'name'))}: mapping.name: its ConceptMap is not "
                                   f"valid R4: {issues[0].expression}: {issues[0].diagnostics}")
    return made


@mapping.command("concept-maps")
@click.argument("specs", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
def concept_maps(specs: tuple[pathlib.Path, ...]) -> None:
    """Print the ConceptMap of each mapping's code maps (a collection Bundle for several).

    Built from the spec's `map:` tables, as every ingest writes them: a group per source column
    and target system, the targets the codings the adapter writes.

    \b
    Example:
      fhir-adapter mapping concept-maps mappings/sites/site-c.yaml
      fhir-adapter mapping concept-maps mappings/sites/site-*.yaml > concept-maps.json
    """
    made = [_checked_concept_map(_load(spec)) for spec in specs]
    out = made[0] if len(made) == 1 else {"resourceType": "Bundle", "type": "collection",
                                          "entry": [{"fullUrl": m["url"], "resource": m} for m in made]}
    click.echo(json.dumps(out, indent=1, ensure_ascii=False))


@mapping.command("test")
@SPEC_ARG
@click.option("--update", is_flag=True, help="Rewrite the expected files from the current output.")
def test_command(spec: pathlib.Path, update: bool) -> None:
    """Run the mapping's golden tests (its `golden:` inputs against the expected FHIR and rejections)."""
    from adapter.mapping.golden import run_golden
    results = run_golden(_load(spec), update=update)
    if not results:
        raise click.ClickException(f"{spec} has no golden tests (add a `golden:` list)")
    for result in results:
        click.echo(f"{'updated' if update else 'ok' if result.passed else 'FAILED'}: {result.input}")
        if result.diff:
            click.echo(result.diff)
    if not all(r.passed for r in results):
        sys.exit(1)


@mapping.command()
@SPEC_ARG
@FILES_ARG
def coverage(spec: pathlib.Path, files: tuple[pathlib.Path, ...]) -> None:
    """Which source columns the mapping reads and which it leaves, and rules that never fired."""
    from adapter.mapping.coverage import coverage as coverage_of
    loaded = _load(spec)
    found = coverage_of(loaded, files)
    for title, columns in (("columns read", found.read), ("columns left unused on purpose", found.unused_on_purpose),
                           ("columns not mapped", found.not_mapped)):
        click.echo(f"{title} ({len(columns)}):")
        for column in columns:
            click.echo(f"  {column}")
    click.echo(f"rules never fired ({len(found.never_fired)}):")
    for rule in found.never_fired:
        click.echo(f"  {loaded.where(rule)} {rule.name}")
    click.echo(f"rules fired: {found.rules - len(found.never_fired)} of {found.rules}; {found.report.summary()}")


@click.command("translate")
@click.option("--mapping", "spec", required=True, type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              help="The site mapping (mappings/sites/*.yaml).")
@click.option("--dry-run", is_flag=True, help="Print the FHIR as NDJSON on stdout; nothing is stored.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="Write the FHIR as NDJSON to this file instead of stdout (with or without --dry-run).")
@KEY_FILE
@QUARANTINE
@FILES_ARG
def translate_command(spec: pathlib.Path, dry_run: bool, out: pathlib.Path | None, key_file: pathlib.Path | None,
                      quarantine: pathlib.Path | None, files: tuple[pathlib.Path, ...]) -> None:
    """Map and validate site exports to FHIR without storing anything.

    Rejections and the summary go to stderr. Exits 1 when anything (a row, or a cell) was rejected.

    \b
    Examples:
      fhir-adapter translate --dry-run --mapping mappings/sites/site-d.yaml export.csv | head
      fhir-adapter translate --out site-e.ndjson --mapping mappings/sites/site-e.yaml export.xlsx
    """
    if not dry_run and out is None:  # translate never stores: --dry-run says so, --out says where
        raise click.UsageError("give --dry-run (FHIR on stdout) or --out FILE (or both: FHIR to FILE)")
    loaded = _load(spec)
    key = pseudonym_key(loaded, key_file)
    if out is not None:
        with out.open("wb") as handle:
            report = translate(loaded, files, handle, key, quarantine=quarantine)
    else:
        report = translate(loaded, files, sys.stdout.buffer, key, quarantine=quarantine)
        sys.stdout.flush()
    _report(report, quarantine)
    if report.rejected_any:
        sys.exit(1)


@click.command("ingest")
@click.option("--site", required=True, help="The site the files come from (must be the mapping's site).")
@click.option("--mapping", "spec", required=True, type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              help="The site mapping (mappings/sites/*.yaml).")
@DB_OPTION
@KEY_FILE
@QUARANTINE
@WORKERS
@NO_CHECK_REFERENCES
@FILES_ARG
def ingest_command(site: str, spec: pathlib.Path, db: str, key_file: pathlib.Path | None,
                   quarantine: pathlib.Path | None, workers: int, no_check_references: bool,
                   files: tuple[pathlib.Path, ...]) -> None:
    """Map, validate and store site exports; ingesting the same rows again updates them in place.

    A bad cell costs only the resources it feeds: each rejection is listed (file, row, column,
    value, rule, reason, resources not made); what a row keeps and its Provenance are written
    together. With --quarantine, rejected and partly accepted rows (with the rows of their
    record they look values up in) are written out to fix and ingest again; a value that made
    nothing is a warning (warnings.csv). The summary counts rows accepted, partly accepted and
    rejected, and distinct resources created, updated and unchanged, by type. A row whose
    references do not resolve once the rest is written is rejected whole. Exits 1 when anything
    was rejected.

    FILES are CSV, REDCap, JSON or NDJSON exports, or Excel workbooks (format: xlsx or xls):
    a workbook's rejections name their cell (随访!W6) in rejections.csv, where the site fixes
    them and sends the workbook again (its rows are not quarantined: a wide row is several
    records). A workbook that cannot be read as the mapping says (a CSV renamed, password-
    protected, corrupted, past the bounds, a sheet or header missing) is one error, and
    nothing is stored.

    \b
    Examples:
      fhir-adapter ingest --site site-c --mapping mappings/sites/site-c.yaml --quarantine out/ export.csv
      fhir-adapter ingest --site site-e --mapping mappings/sites/site-e.yaml --quarantine out/ export.xlsx
    """
    from adapter.store import open_store
    loaded = _load(spec)
    if loaded.site != site:
        raise click.UsageError(f"--site {site} but {spec} maps site {loaded.site}")
    key = pseudonym_key(loaded, key_file)
    store = open_store(db, check_references=False if no_check_references else None)
    try:
        missing = missing_definitions(loaded, store)
        if missing:
            click.echo(f"warning: {missing}", err=True)
        report = ingest(loaded, files, store, key, workers=workers, quarantine=quarantine,
                        progress=sys.stderr.isatty())
    finally:
        store.close()
    _report(report, quarantine)
    click.echo(json.dumps({rtype: {s: counts[s] for s in ("created", "updated", "unchanged")}
                           for rtype, counts in sorted(report.by_type.items())}))
    if report.rejected_any:
        sys.exit(1)
