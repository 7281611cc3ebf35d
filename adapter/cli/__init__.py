"""`fhir-adapter`: serve the gateway, set up the store, load FHIR files, run the demo; the
commands of each part are in the modules beside this one."""
from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from adapter.cli.audit import audit_command
from adapter.cli.clients import clients
from adapter.cli.database import cohorts, init_db, load, upgrade_db
from adapter.cli.exchange import exchange
from adapter.cli.mapping import ingest_command, mapping, translate_command
from adapter.cli.outcomes import outcomes_command
from adapter.cli.protocol import protocol
from adapter.cli.serve import demo, serve
from adapter.errors import AdapterError

__all__ = ["main"]


class _Commands(click.Group):
    """The command line's one boundary: an error the adapter means, and a store or database
    failure, end a command with one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except AdapterError as exc:
            raise click.ClickException(str(exc)) from None
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise click.ClickException(f"database error: {reason}") from None
        except ValueError as exc:  # e.g. an unsupported database URL
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ucmsc-fhir-adapter")
def main() -> None:
    """FHIR R4 adapter for the UC-MSC cerebral palsy treatment protocol."""


for command in (init_db, upgrade_db, load, cohorts, serve, demo, protocol, clients, mapping, translate_command,
                ingest_command, audit_command, exchange, outcomes_command):
    main.add_command(command)

if __name__ == "__main__":
    main()
