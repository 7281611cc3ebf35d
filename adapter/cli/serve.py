"""`fhir-adapter serve` and `fhir-adapter demo`: the gateway under gunicorn."""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

import click

from adapter.cli.database import migrate
from adapter.cli.options import DB_OPTION
from adapter.cli.serve_options import check_base_url, gunicorn_args, parse_host, worker_env
from adapter.cli.sign_in_options import SignInOptions, sign_in_options
from adapter.demo import load_demo
from adapter.demo_data import DEMO_DIR
from adapter.store import open_store
from adapter.store.engines import normalize_url

__all__ = ["serve", "demo", "ServeOptions"]

HOST = click.option("--host", default="127.0.0.1", show_default=True,
                    help="IP address to listen on (IPv4, IPv6 such as ::1, or localhost).")
PORT = click.option("--port", default=8080, show_default=True, help="Port to listen on.")
WORKERS = click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
INSECURE = click.option("--insecure-no-auth", is_flag=True,
                        help="Allow a non-loopback address without authorisation (development, demo).")


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
    sign_in: SignInOptions = SignInOptions()


def _serve(host: str, port: int, db: str, workers: int, options: ServeOptions) -> None:
    listen = parse_host(host, port)
    if not listen.loopback and not (options.auth or options.insecure_no_auth):
        raise click.UsageError(
            f"refusing to listen on {host}, which is not a loopback address, without "
            "authorisation: pass --auth (or --insecure-no-auth if you really mean to expose "
            "the data to anyone who can reach it).")
    base_url = check_base_url(options.base_url)
    migrate(db)  # once, before the workers start
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
    os.environ.update(options.sign_in.worker_env(listen.loopback, options.auth))
    # The database and request bounds (adapter.gateway.app) answer first; this one is the last resort.
    timeout = os.environ.get("FHIR_ADAPTER_WORKER_TIMEOUT", str(WORKER_TIMEOUT))
    args = gunicorn_args(gunicorn, listen, workers, timeout, options.certfile, options.keyfile)
    sys.stdout.flush()
    os.execv(gunicorn, args)


@click.command()
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
@sign_in_options
def serve(host: str, port: int, db: str, workers: int, auth: bool, insecure_no_auth: bool,
          audit: bool | None, base_url: str | None, certfile: str | None, keyfile: str | None,
          cors_origins: tuple[str, ...], sign_in: SignInOptions) -> None:
    """Serve the FHIR R4 gateway at http://HOST:PORT/fhir with gunicorn, and its pages at /ui/.

    \b
    Examples:
      fhir-adapter serve                                   # loopback, no auth (development)
      fhir-adapter serve --host ::1 --port 8443 --certfile cert.pem --keyfile key.pem
      fhir-adapter serve --host 0.0.0.0 --auth --base-url https://fhir.example.org/fhir
    \b
    The pages signed in through the hospital's OpenID Connect provider (its secret in
    FHIR_ADAPTER_OIDC_CLIENT_SECRET or a file; register the redirect URI
    https://fhir.example.org/ui/sign-in/callback with the provider):
      fhir-adapter serve --host 0.0.0.0 --auth --base-url https://fhir.example.org/fhir \\
        --certfile cert.pem --keyfile key.pem \\
        --oidc-issuer https://login.hospital.example/realms/staff --oidc-client-id ucmsc-pages \\
        --oidc-client-secret-file /etc/fhir-adapter/oidc-secret \\
        --oidc-roles mappings/sign-in/example-roles.yaml
    """
    _serve(host, port, db, workers, ServeOptions(auth, insecure_no_auth, audit, base_url, certfile, keyfile,
                                                 cors_origins, sign_in))


@click.command()
@DB_OPTION
@click.option("--no-serve", is_flag=True, help="Only load the demo data into the store.")
@HOST
@PORT
@WORKERS
def demo(db: str, no_serve: bool, host: str, port: int, workers: int) -> None:
    """Load the demo data into the store, then serve it (what `make run` does)."""
    loaded = load_demo(db)
    for name, count in loaded.protocols:
        click.echo(f"protocol: {count} resources from {name}")
    report = loaded.demo
    assert report is not None
    click.echo(f"demo data: {report.summary()} ({DEMO_DIR}); {loaded.plans} care plans")
    for site, summary in loaded.sites:
        click.echo(f"site {site}: {summary}")
    click.echo(f"cohorts: {', '.join(loaded.cohorts)}")
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

