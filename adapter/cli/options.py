"""Options shared by every `fhir-adapter` command group."""
from __future__ import annotations

import os

import click

from adapter.store import DEFAULT_DB

__all__ = ["DB_OPTION", "DEFAULT_DB", "NO_CHECK_REFERENCES"]

DB_OPTION = click.option(
    "--db", default=lambda: os.environ.get("FHIR_ADAPTER_DB", DEFAULT_DB), show_default=DEFAULT_DB,
    help="Database URL (env FHIR_ADAPTER_DB): sqlite:///PATH (embedded) or "
         "postgresql://USER[:PASSWORD]@HOST:PORT/DBNAME.")
# A staged load: targets of references arrive later (env FHIR_ADAPTER_REFERENTIAL_INTEGRITY=off).
NO_CHECK_REFERENCES = click.option(
    "--no-check-references", "no_check_references", is_flag=True,
    help="Store resources whose references do not resolve here (yet), for staged loads "
         "(same as FHIR_ADAPTER_REFERENTIAL_INTEGRITY=off).")
