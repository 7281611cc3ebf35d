"""`fhir-adapter exchange`: check a policy at a site, pull sites into the centre, and say how
the pulls stand."""
from __future__ import annotations

import logging
import os
import pathlib
import sys

import click

from adapter.cli.options import DB_OPTION
from adapter.exchange.check import check_policy, store_needles
from adapter.exchange.anonymity import Release
from adapter.exchange.policy import SpecError, load_policy, policy_path
from adapter.exchange.pull import PullFailed, PullOptions, load_client_key, pull_site
from adapter.exchange.pull_record import log_attempt, site_status
from adapter.exchange.scan import Needles
from adapter.exchange.view import POLICY_DIR, deidentifier, default_exchange_key_file
from adapter.private import beside_store
from adapter.store import open_store
from adapter.store.engines import normalize_url

__all__ = ["exchange"]

POLICY_DIR_OPTION = click.option("--policy-dir", type=click.Path(file_okay=False, path_type=pathlib.Path),
                                 default=POLICY_DIR, show_default=True, help="Where the exchange policies are.")


def default_state(db: str) -> pathlib.Path:
    """exchange/ beside an SQLite file, else var/exchange."""
    return pathlib.Path(beside_store(normalize_url(db), "exchange"))


STATE_OPTION = click.option("--state", type=click.Path(file_okay=False, path_type=pathlib.Path),
                            help="The centre's exchange folder: pulls under way, quarantine/, pulls.jsonl "
                                 "(default: exchange/ beside the SQLite file, else var/exchange).")


@click.group()
def exchange() -> None:
    """Multi-site exchange: a site's de-identification policy, the centre's pulls.

    \b
    At a site:
      fhir-adapter exchange check centre-v1 --mapping mappings/sites/site-a.yaml \\
          --source fixtures/sites/site-a/export.csv
      fhir-adapter clients add centre --jwks centre.jwks.json --scope "system/*.rs" --policy centre-v1
    At the coordinating centre:
      fhir-adapter exchange pull --site site-a --from https://site-a.example.org/fhir \\
          --client-id centre --key centre-private.jwk.json --since auto
      fhir-adapter exchange status --overdue-hours 26
    """


@exchange.command("check")
@click.argument("policy_name", metavar="POLICY")
@click.option("--mapping", "mapping_path", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              help="The site's mapping: its MRN and birth-date columns say what to look for in --source.")
@click.option("--source", "sources", multiple=True, type=click.Path(exists=True, dir_okay=False,
                                                                     path_type=pathlib.Path),
              help="The site's source export(s), read for their MRNs and birth dates (repeatable).")
@click.option("--key-file", help="The site's exchange key (default: FHIR_ADAPTER_EXCHANGE_KEY, else beside "
                                 "the SQLite file).")
@POLICY_DIR_OPTION
@DB_OPTION
def check_command(policy_name: str, mapping_path: pathlib.Path | None, sources: tuple[pathlib.Path, ...],
                  key_file: str | None, policy_dir: pathlib.Path, db: str) -> None:
    """Run POLICY over this site's store: fail if any direct identifier survives it or its k fails.

    Every resource the policy lets out is validated and scanned for names, full birth dates,
    addresses, telecoms, free text and identifiers other than the study pseudonyms, and for the
    MRNs and birth dates of --source (by --mapping) and what the store holds of each child.
    Then the policy's k-anonymity over the children: the generalisation levels reached, the
    children by class size, those suppressed and the information lost (what the export will
    apply). Exit status 1 when anything is found (each finding: resource, element, rule; never
    the value) or when k cannot be reached.

    \b
    Examples:
      fhir-adapter exchange check centre-v1
      fhir-adapter exchange check centre-v1 --mapping mappings/sites/site-a.yaml \\
          --source fixtures/sites/site-a/export.csv
    """
    if sources and mapping_path is None:
        raise click.UsageError("--source needs --mapping (which says which columns hold the MRN)")
    try:
        load_policy(policy_path(policy_dir, policy_name))
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None
    store = open_store(db)
    try:
        needles = Needles.from_sources([(mapping_path, list(sources))]) if mapping_path else Needles()
        policy = deidentifier(store, policy_name, policy_dir, key_file or os.environ.get(
            "FHIR_ADAPTER_EXCHANGE_KEY") or default_exchange_key_file(db))
        report = check_policy(store, policy, store_needles(store, needles))
    finally:
        store.close()
    for rtype in sorted(set(report.shared) | set(report.withheld)):
        click.echo(f"{rtype}: {report.shared[rtype]} shared, {report.withheld[rtype]} kept at the site")
    if report.release is not None:
        _print_release(report.release)
    for problem in report.problems:
        click.echo(problem, err=True)
    if not report.ok:
        shown = len(report.problems)
        raise click.ClickException(f"{report.problem_count} problem(s) in what {policy_name} lets out"
                                   + (f" ({shown} shown)" if shown < report.problem_count else ""))
    click.echo(f"{policy_name}: nothing identifying survives ({sum(report.shared.values())} resources checked)")


def _print_release(release: Release) -> None:
    """The k-anonymity of what the policy lets out: levels, class sizes, loss, suppression."""
    levels = ", ".join(f"{qi} level {n}" for qi, n in release.levels.items())
    click.echo(f"k-anonymity (k = {release.k}): {release.children} children; generalised to {levels}")
    sizes = ", ".join(f"{size}: {n}" for size, n in sorted(release.distribution().items()))
    click.echo(f"  children by the size of their class (size: children): {sizes or 'none'}")
    smallest = min(release.classes.values(), default=0)
    click.echo(f"  smallest class {smallest}; {len(release.classes)} classes; {len(release.suppressed)} children "
               f"suppressed ({len(release.suppressed) / max(release.children, 1):.1%}, at most "
               f"{release.max_suppressed:.0%} allowed)")
    loss = ", ".join(f"{qi} {share:.0%}" for qi, share in release.loss.items())
    click.echo(f"  information lost (0%: exact, 100%: withheld), per quasi-identifier: {loss}")


@exchange.command("pull")
@click.option("--site", "sites", multiple=True, required=True, help="The site's code, e.g. site-a (repeatable, "
                                                                   "each with its --from).")
@click.option("--from", "bases", multiple=True, required=True, help="The site's FHIR base URL (repeatable).")
@click.option("--client-id", required=True, help="The centre's client id, as each site registered it.")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              help="The centre's private key: a JWK, a JWK Set or a PEM file (RS384 or ES384).")
@click.option("--since", default="auto", show_default=True,
              help="auto: what changed since the last successful pull of the site; all: everything; or an instant.")
@click.option("--max-file-bytes", default=8 << 30, show_default=True,
              help="A file larger than this is refused (a site cannot fill the centre's disk).")
@click.option("--overlap", default=60.0, show_default=True,
              help="With --since auto, ask from this many seconds before the last pull's transactionTime: a "
                   "write committed late is not missed; what comes twice writes nothing.")
@click.option("--group", help="A Group-level export of this Group at each site (default: system level).")
@click.option("--policy", "policy_name", default="centre-v1", show_default=True,
              help="The policy every resource received must carry (and whose rules the scan applies).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds per HTTP request.")
@click.option("--max-wait", default=3600.0, show_default=True, help="Seconds to wait for a site's export.")
@click.option("--retries", default=5, show_default=True,
              help="Retries per request on 429, 5xx, connection errors and timeouts (exponential backoff "
                   "from 0.5 s, honouring Retry-After).")
@STATE_OPTION
@POLICY_DIR_OPTION
@DB_OPTION
def pull_command(sites: tuple[str, ...], bases: tuple[str, ...], client_id: str, key_file: pathlib.Path,
                 since: str, max_file_bytes: int, overlap: float, group: str | None, policy_name: str, timeout: float, max_wait: float, retries: int,
                 state: pathlib.Path | None, policy_dir: pathlib.Path, db: str) -> None:
    """Pull each --site from its --from URL into this (the centre's) store, by Bulk Data.

    A site that fails (5xx, timeouts, after retries with backoff) is reported and the others are
    still pulled; a file that fails verification is quarantined whole. Exit status 1 when any
    site failed or any file was refused.

    \b
    Example:
      fhir-adapter exchange pull --site site-a --from http://127.0.0.1:8081/fhir \\
          --site site-b --from http://127.0.0.1:8082/fhir --client-id centre --key centre.jwk.json
    """
    if len(sites) != len(bases):
        raise click.UsageError("give one --from URL for each --site")
    try:
        policy = load_policy(policy_path(policy_dir, policy_name))
        key = load_client_key(key_file)
    except (SpecError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    folder = state or default_state(db)
    store = open_store(db)
    failed = False
    try:
        for site, base in zip(sites, bases, strict=True):
            options = PullOptions(site, base.rstrip("/"), client_id, key, policy, folder,
                                  since=None if since == "all" else since, overlap=overlap, group=group,
                                  max_file_bytes=max_file_bytes,
                                  timeout=timeout,
                                  max_wait=max_wait, retries=retries)
            try:
                report = pull_site(store, options, say=lambda text: click.echo(text, err=True))
            except PullFailed as exc:
                failed = True
                log_attempt(folder, {"site": site, "ok": False, "error": str(exc)})
                click.echo(f"{site}: FAILED: {exc}", err=True)
                continue
            except Exception as exc:  # a defect or the centre's own store: said, and the others still pulled
                failed = True
                logging.getLogger("adapter.exchange").exception("pull of %s", site)
                log_attempt(folder, {"site": site, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
                click.echo(f"{site}: FAILED: {type(exc).__name__}: {exc}"[:2000], err=True)
                continue
            failed |= not report.ok
            log_attempt(folder, {"site": site, "ok": report.ok, "transactionTime": report.transaction_time,
                                 "since": report.since, "received": report.received, "written": report.written,
                                 "unchanged": report.unchanged, "deleted": report.deleted,
                                 "refused": report.refused, "seconds": round(report.seconds, 3)})
            total = sum(report.received.values())
            click.echo(f"{site}: {total} resources received ({report.written} written, {report.unchanged} "
                       f"unchanged), {report.deleted} deleted, {len(report.refused)} file(s) refused, "
                       f"as of {report.transaction_time} in {report.seconds:.1f} s")
    finally:
        store.close()
    if failed:
        sys.exit(1)


@exchange.command("status")
@click.option("--site", "sites", multiple=True, help="A site expected to be pulled (repeatable): never pulled "
                                                    "is overdue.")
@click.option("--overdue-hours", default=26.0, show_default=True,
              help="A site whose last successful pull is older than this is overdue.")
@STATE_OPTION
@DB_OPTION
def status_command(sites: tuple[str, ...], overdue_hours: float, state: pathlib.Path | None, db: str) -> None:
    """Per site: last pull, resources received by type, refused files, time since the last
    success. Exit status 1 when a site is overdue (for cron and monitoring).

    \b
    Example:
      fhir-adapter exchange status --site site-a --site site-b --overdue-hours 26
    """
    found = site_status(state or default_state(db), overdue_hours, list(sites))
    overdue = False
    for status in found:
        hours = status["hours_since_success"]
        since = "never pulled successfully" if hours is None else f"{hours:.1f} h since the last success"
        received = ", ".join(f"{t} {n}" for t, n in sorted(status["received"].items())) or "nothing"
        click.echo(f"{status['site']}: last attempt {status['last_attempt'] or 'never'}; {since}; "
                   f"received {received}; {status['refused']} file(s) refused"
                   + (f"; last error: {status['error']}" if status["error"] else "")
                   + ("; OVERDUE" if status["overdue"] else ""))
        overdue |= status["overdue"]
    if not found:
        click.echo("no pulls yet")
    if overdue:
        sys.exit(1)



@exchange.command("demo")
@click.option("--folder", type=click.Path(file_okay=False, path_type=pathlib.Path), default=pathlib.Path(
    "var/exchange-demo"), show_default=True, help="Where the three stores, keys and the centre's pulls go "
                                                  "(made anew each run).")
@click.option("--port", default=8081, show_default=True,
              help="site-a listens on PORT, site-b on PORT+1, the centre on PORT+2 (127.0.0.1 only).")
@click.option("--once", is_flag=True, help="Pull once, print the status and stop the gateways.")
def demo_command(folder: pathlib.Path, port: int, once: bool) -> None:
    """Two sites and the coordinating centre on this machine, then the centre pulls both.

    Each gets its own SQLite store, keys and gateway (`fhir-adapter serve --auth`, loopback
    only); each site ingests its synthetic export and registers the centre as a client under
    the exchange policy centre-v1; the centre pulls each site by Bulk Data and says what it got.

    \b
    Example:
      fhir-adapter exchange demo              # serve until Ctrl-C
      fhir-adapter exchange demo --once       # pull, report, stop
    """
    from adapter.exchange.run_demo import run_demo
    sys.exit(run_demo(folder, port, once, click.echo))
