"""Options shared by every `fhir-adapter` command group."""
from __future__ import annotations

import os

import click

from adapter.store import DEFAULT_DB

__all__ = ["DB_OPTION", "DEFAULT_DB"]

DB_OPTION = click.option(
    "--db", default=lambda: os.environ.get("FHIR_ADAPTER_DB", DEFAULT_DB), show_default=DEFAULT_DB,
    help="Database URL (env FHIR_ADAPTER_DB): sqlite:///PATH (embedded) or "
         "postgresql://USER[:PASSWORD]@HOST:PORT/DBNAME.")
