"""`fhir-adapter init-db | upgrade-db | load | cohorts`: the store itself."""
from __future__ import annotations

import pathlib
import sys

import click

from adapter.cli.options import DB_OPTION, NO_CHECK_REFERENCES
from adapter.exchange.cohorts import build_site_cohorts
from adapter.loading import load_files
from adapter.store import open_store
from adapter.store.engines import make_engine, shown_url
from adapter.store.migrate import upgrade

__all__ = ["migrate", "init_db", "upgrade_db", "load", "cohorts"]


def migrate(db: str) -> None:
    engine = make_engine(db)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"store ready: {shown_url(db)} (schema {after}, already the newest)")
    else:
        click.echo(f"store ready: {shown_url(db)} (schema {before or 'none'} -> {after})")


@click.command("init-db")
@DB_OPTION
def init_db(db: str) -> None:
    """Create the store's schema, or bring it up to date (safe to run again)."""
    migrate(db)


@click.command("upgrade-db")
@DB_OPTION
def upgrade_db(db: str) -> None:
    """Apply the schema migrations a store has not had yet (run before starting a new release)."""
    migrate(db)


@click.command()
@DB_OPTION
@click.option("--batch-size", default=1000, show_default=True, help="Resources per transaction.")
@NO_CHECK_REFERENCES
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=pathlib.Path))
def load(db: str, batch_size: int, no_check_references: bool, paths: tuple[pathlib.Path, ...]) -> None:
    """Validate and load FHIR JSON, NDJSON or Bundle files (or folders of them).

    Valid resources are loaded; each invalid one is reported with its file, place, element
    and reason, as is one whose references do not resolve once everything else is loaded.
    Exits 1 when anything was rejected.
    """
    store = open_store(db, check_references=False if no_check_references else None)
    try:
        report = load_files(store, list(paths), batch_size=batch_size)
    finally:
        store.close()
    for rejection in report.rejected:
        click.echo(str(rejection), err=True)
    click.echo(report.summary())
    if report.rejected:
        sys.exit(1)



@click.command()
@DB_OPTION
def cohorts(db: str) -> None:
    """(Re)build the cohort Groups: one per study arm, one per site (for Group/{id}/$export).

    The sites are those the store knows (their Organizations: the protocol's, loaded by
    `protocol load`, and those declared beside their mappings, written by their ingests), each
    with its children (its Patients' subject identifiers) and its own ResearchStudy.

    \b
    Example:
      fhir-adapter cohorts --db sqlite:///var/adapter.db
    """
    store = open_store(db)
    try:
        for made in build_site_cohorts(store):
            click.echo(f"Group/{made['id']}: {made['quantity']} members ({made['name']})" if "quantity" in made
                       else f"ResearchStudy/{made['id']}: {made['title']}")
    finally:
        store.close()
