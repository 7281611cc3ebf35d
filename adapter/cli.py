"""`fhir-adapter`: serve the gateway, set up the store, load FHIR files, run the demo."""
from __future__ import annotations

import os
import pathlib
import shutil
import sys
from dataclasses import dataclass

import click
from sqlalchemy.exc import SQLAlchemyError

from adapter.audit.cli import audit_command
from adapter.auth.cli import clients
from adapter.cli_options import DB_OPTION, NO_CHECK_REFERENCES
from adapter.exchange.cli import exchange
from adapter.loading import load_files
from adapter.mapping.cli import SITE_SPECS, ingest_command, mapping, translate_command
from adapter.outcomes.cli import outcomes_command
from adapter.protocol.cli import SPECS, load_protocol, protocol
from adapter.serve_options import check_base_url, gunicorn_args, parse_host, worker_env
from adapter.store import Repository, open_store
from adapter.store.engines import make_engine, normalize_url, shown_url
from adapter.store.migrate import upgrade

DEMO_DIR = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "demo"
SITES_DIR = DEMO_DIR.parent / "sites"
# The demo sites' pseudonym key: the demo data are synthetic, so this key protects nothing.
DEMO_KEY = b"demo-pseudonym-key: synthetic data only, not a secret"


class _Commands(click.Group):
    """Store and database failures end a command with one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise click.ClickException(f"database error: {reason}") from None
        except ValueError as exc:  # e.g. an unsupported database URL
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ucmsc-fhir-adapter")
def main() -> None:
    """FHIR R4 adapter for the UC-MSC cerebral palsy treatment protocol."""


def _migrate(db: str) -> None:
    engine = make_engine(db)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"store ready: {shown_url(db)} (schema {after}, already the newest)")
    else:
        click.echo(f"store ready: {shown_url(db)} (schema {before or 'none'} -> {after})")


@main.command("init-db")
@DB_OPTION
def init_db(db: str) -> None:
    """Create the store's schema, or bring it up to date (safe to run again)."""
    _migrate(db)


@main.command("upgrade-db")
@DB_OPTION
def upgrade_db(db: str) -> None:
    """Apply the schema migrations a store has not had yet (run before starting a new release)."""
    _migrate(db)


@main.command()
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


WORKER_TIMEOUT = 60  # seconds; above the gateway's REQUEST_TIMEOUT + STATEMENT_TIMEOUT (45)


@dataclass(frozen=True)
class ServeOptions:
    """What `serve` passes on beside the address: auth, audit, links, TLS, CORS."""

    auth: bool = False
    insecure_no_auth: bool = False
    audit: bool | None = None  # None: the app's default (on with auth)
    base_url: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cors_origins: tuple[str, ...] = ()


def _serve(host: str, port: int, db: str, workers: int, options: ServeOptions) -> None:
    listen = parse_host(host, port)
    if not listen.loopback and not (options.auth or options.insecure_no_auth):
        raise click.UsageError(
            f"refusing to listen on {host}, which is not a loopback address, without "
            "authorisation: pass --auth (or --insecure-no-auth if you really mean to expose "
            "the data to anyone who can reach it).")
    base_url = check_base_url(options.base_url)
    _migrate(db)  # once, before the workers start
    store = open_store(db, migrate=False)
    store.analyze()  # plans for the data as it is now, whatever wrote it
    store.close()
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or shutil.which("gunicorn")
    if gunicorn is None:
        raise click.ClickException("gunicorn is not installed")
    # The workers open what this command resolved: relative paths against its working directory.
    os.environ["FHIR_ADAPTER_DB"] = normalize_url(db)
    if os.environ.get("FHIR_ADAPTER_EXPORT_DIR"):
        os.environ["FHIR_ADAPTER_EXPORT_DIR"] = os.path.abspath(os.environ["FHIR_ADAPTER_EXPORT_DIR"])
    os.environ.update(worker_env(options.auth, options.audit, base_url, options.cors_origins))
    # The database and request bounds (adapter.gateway.app) answer first; this one is the last resort.
    timeout = os.environ.get("FHIR_ADAPTER_WORKER_TIMEOUT", str(WORKER_TIMEOUT))
    args = gunicorn_args(gunicorn, listen, workers, timeout, options.certfile, options.keyfile)
    sys.stdout.flush()
    os.execv(gunicorn, args)


def _ingest_demo_sites(store: Repository) -> list[tuple[str, str]]:
    """Every synthetic site's export through its mapping (their bad rows are rejected,
    as fixtures/sites/*/expected-rejections.csv says)."""
    from adapter.mapping.ingest import ingest
    from adapter.mapping.spec import load_mapping
    done = []
    for spec_path in sorted(SITE_SPECS.glob("site-*.yaml")):
        spec = load_mapping(spec_path)
        exports = sorted((SITES_DIR / spec.site).glob("export.*"))
        report = ingest(spec, exports, store, DEMO_KEY, workers=1)
        done.append((spec.site, f"{report.summary()} (the fixture's deliberately bad rows)"))
    return done


def _cohorts(store: Repository) -> list[dict[str, object]]:
    from adapter.exchange.cohorts import build_cohorts
    from adapter.mapping.spec import load_mapping
    specs = [load_mapping(p) for p in sorted(SITE_SPECS.glob("site-*.yaml"))]
    sites = [(s.site, str(s.data["mapping"].get("title", s.site))) for s in specs]
    return build_cohorts(store, specs[0].catalogue.base if specs else "", sites)


@main.command()
@DB_OPTION
def cohorts(db: str) -> None:
    """(Re)build the cohort Groups: one per study arm, one per site (for Group/{id}/$export)."""
    store = open_store(db)
    try:
        for made in _cohorts(store):
            click.echo(f"Group/{made['id']}: {made['quantity']} members ({made['name']})" if "quantity" in made
                       else f"ResearchStudy/{made['id']}: {made['title']}")
    finally:
        store.close()


def _plan_demo_children(store: Repository) -> int:
    """A stored CarePlan for every demo child on study, from its arm and first injection date."""
    from datetime import date

    from adapter.protocol.apply import apply_plan, arm_protocol, read_json, search_all
    planned = 0
    for subject in search_all(store, "ResearchSubject", [("status", "on-study")]):
        study = read_json(store, "ResearchStudy", subject["study"]["reference"].split("/")[1])
        apply_plan(store, arm_protocol(study, subject["assignedArm"]), subject["individual"]["reference"],
                   date.fromisoformat(subject["period"]["start"]), persist=True)
        planned += 1
    return planned


HOST = click.option("--host", default="127.0.0.1", show_default=True,
                    help="IP address to listen on (IPv4, IPv6 such as ::1, or localhost).")
PORT = click.option("--port", default=8080, show_default=True, help="Port to listen on.")
WORKERS = click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
INSECURE = click.option("--insecure-no-auth", is_flag=True,
                        help="Allow a non-loopback address without authorisation (development, demo).")


@main.command()
@HOST
@PORT
@DB_OPTION
@WORKERS
@click.option("--auth", is_flag=True, help="Require SMART access tokens (env FHIR_ADAPTER_AUTH=on); "
              "needed for any non-loopback address.")
@INSECURE
@click.option("--audit/--no-audit", default=None, help="Record an AuditEvent per FHIR request "
              "(env FHIR_ADAPTER_AUDIT; default: on with --auth).")
@click.option("--base-url", help="Public service base, e.g. https://fhir.example.org/fhir, used for "
              "every link instead of the request's Host header (env FHIR_ADAPTER_BASE_URL).")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM).")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM).")
@click.option("--cors-origin", "cors_origins", multiple=True, help="A browser origin allowed by CORS, "
              "e.g. https://app.example.org (repeatable; env FHIR_ADAPTER_CORS_ORIGINS; default none).")
def serve(host: str, port: int, db: str, workers: int, auth: bool, insecure_no_auth: bool,
          audit: bool | None, base_url: str | None, certfile: str | None, keyfile: str | None,
          cors_origins: tuple[str, ...]) -> None:
    """Serve the FHIR R4 gateway at http://HOST:PORT/fhir with gunicorn.

    \b
    Examples:
      fhir-adapter serve                                   # loopback, no auth (development)
      fhir-adapter serve --host ::1 --port 8443 --certfile cert.pem --keyfile key.pem
      fhir-adapter serve --host 0.0.0.0 --auth --base-url https://fhir.example.org/fhir
    """
    _serve(host, port, db, workers, ServeOptions(auth, insecure_no_auth, audit, base_url, certfile, keyfile,
                                                 cors_origins))


@main.command()
@DB_OPTION
@click.option("--no-serve", is_flag=True, help="Only load the demo data into the store.")
@HOST
@PORT
@WORKERS
def demo(db: str, no_serve: bool, host: str, port: int, workers: int) -> None:
    """Load the demo data into the store, then serve it (what `make run` does)."""
    for spec in sorted(SPECS.glob("*.yaml")):
        click.echo(f"protocol: {load_protocol(db, spec)[0]} resources from {spec.name}")
    store = open_store(db)
    try:
        report = load_files(store, [DEMO_DIR])
        sites = _ingest_demo_sites(store)
        plans = _plan_demo_children(store)
        cohorts = [f"Group/{g['id']} ({g['quantity']})" for g in _cohorts(store) if g["resourceType"] == "Group"]
    finally:
        store.close()
    click.echo(f"demo data: {report.summary()} ({DEMO_DIR}); {plans} care plans")
    for site, summary in sites:
        click.echo(f"site {site}: {summary}")
    click.echo(f"cohorts: {', '.join(cohorts)}")
    for rejection in report.rejected:
        click.echo(str(rejection), err=True)
    if report.rejected:
        sys.exit(1)
    if no_serve:
        return
    base = f"http://{host}:{port}/fhir"
    click.echo("\nServing the FHIR R4 gateway. Try:")
    for path in ("metadata", "ResearchStudy/ucmsc-cp", "Patient",
                 "Observation?subject=Patient/demo-child-01&code=http://loinc.org|96761-2&_sort=date",
                 "Procedure?patient=demo-child-02&_sort=date", "Observation/demo-child-01-weight/_history",
                 "PlanDefinition/ucmsc-cp-arm-1/$apply?subject=Patient/demo-child-01&start=2026-01-05",
                 "ResearchSubject/ucmsc-cp-demo-child-01/$adherence?as-of=2026-06-01",
                 "Patient/site-a-A0001/$everything?_count=50",
                 "Observation?subject:Patient.identifier=http://ucmsc-cp.example.org/fhir/sid/site-b-subject|B0002"
                 "&_include=Observation:subject&_count=5",
                 "AdverseEvent?_include=AdverseEvent:subject&_revinclude=Provenance:target"):
        click.echo(f"  curl '{base}/{path}'")
    click.echo(f"  curl -i -H 'Prefer: respond-async' '{base}/Group/site-c-cohort/$export'   "
               "(then GET the Content-Location until 200)")
    click.echo(f"Pages: http://{host}:{port}/ui/ (the study), http://{host}:{port}/ui/workbench (a mapping's dry run)")
    click.echo("Stop with Ctrl-C.\n")
    _serve(host, port, db, workers, ServeOptions())


main.add_command(protocol)
main.add_command(clients)
main.add_command(mapping)
main.add_command(translate_command)
main.add_command(ingest_command)
main.add_command(audit_command)
main.add_command(exchange)
main.add_command(outcomes_command)

if __name__ == "__main__":
    main()
