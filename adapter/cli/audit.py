"""`fhir-adapter audit`: who did what, from the AuditEvents the gateway recorded."""
from __future__ import annotations

import click

from adapter.audit.trail import audit_events, describe
from adapter.cli.options import DB_OPTION
from adapter.fhir.dates import date_range
from adapter.fhir.outcomes import FhirError
from adapter.store import open_store

__all__ = ["audit_command"]


@click.command("audit")
@DB_OPTION
@click.option("--client", help="Only this client id's requests.")
@click.option("--patient", help="Only requests concerning this patient (id or Patient/id).")
@click.option("--since", help="Only events recorded at or after this FHIR date or dateTime.")
def audit_command(db: str, client: str | None, patient: str | None, since: str | None) -> None:
    """Print the audit trail, oldest first: one line per FHIR request (recorded, client, site,
    action C/R/U/D/E, interaction, outcome, resources and patients), tab-separated.

    \b
    Examples:
      fhir-adapter audit --since 2026-11-01
      fhir-adapter audit --client site-a-ehr --since 2026-11-29T08:00:00Z
      fhir-adapter audit --patient site-a-A0001
      fhir-adapter audit --db postgresql://fhir@db.example.org:5432/fhir | grep refused
    """
    if since:
        try:
            date_range(since)
        except (FhirError, ValueError):
            raise click.BadParameter(f"{since!r} is not a FHIR date or dateTime", param_hint="--since") from None
    store = open_store(db)
    try:
        count = 0
        for event in audit_events(store, client, patient, since):
            click.echo(describe(event))
            count += 1
    finally:
        store.close()
    click.echo(f"{count} events", err=True)
