"""`fhir-adapter clients add|list|revoke`: the SMART Backend Services client registry."""
from __future__ import annotations

import contextlib
import ipaddress
import json
import pathlib
import urllib.parse
from collections.abc import Iterator

import click

from adapter.auth.jwks import parse_jwks
from adapter.auth.scopes import ScopeError, parse_scope
from adapter.cli.options import DB_OPTION
from adapter.exchange.policy import SpecError, load_policy, policy_path
from adapter.exchange.view import POLICY_DIR
from adapter.store import open_store
from adapter.store.clients import ClientRecord, ClientRegistry, DuplicateClient

__all__ = ["clients"]

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


@contextlib.contextmanager
def _registry(db: str) -> Iterator[ClientRegistry]:
    store = open_store(db)
    try:
        if not isinstance(store, ClientRegistry):
            raise click.ClickException("this store has no client registry")
        yield store
    finally:
        store.close()


def _check_url(url: str) -> str:
    """https, or http to a loopback address only (a test or a sidecar on the same machine):
    the keys that authenticate a client must not travel where they could be swapped."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise click.BadParameter("the JWKS URL must be https:// (http:// only on a loopback address)",
                                 param_hint="--jwks-url")
    return url


def _check_scopes(text: str) -> list[str]:
    """The registration's scopes, each a SMART system scope this server can honour."""
    scopes = list(dict.fromkeys(text.split()))
    if not scopes:
        raise ValueError("no scope given: e.g. --scope 'system/Observation.rs system/Patient.rs'")
    for scope in scopes:
        try:
            parsed = parse_scope(scope)
        except ScopeError as exc:
            raise ValueError(str(exc)) from None
        if parsed is None:  # openid, patient/..., user/...: nothing for a backend client
            raise ValueError(f"{scope!r} is no SMART system scope (e.g. system/Observation.rs, system/*.read)")
    return scopes


@click.group()
def clients() -> None:
    """Register, list and revoke SMART Backend Services clients.

    \b
    Examples:
      fhir-adapter clients add ehr-site-a --jwks ehr-public.jwks.json \\
          --scope "system/Observation.rs system/Patient.rs" --site site-a
      fhir-adapter clients add registry --jwks-url https://registry.example.org/jwks.json \\
          --scope "system/*.rs"
      fhir-adapter clients add centre --jwks centre-public.jwks.json \\
          --scope "system/*.rs" --policy centre-v1
      fhir-adapter clients list
      fhir-adapter clients revoke ehr-site-a
    """


@clients.command("add")
@click.argument("name")
@click.option("--jwks", "jwks_file", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
              help="File with the client's public JSON Web Key Set (RS384 or ES384 keys).")
@click.option("--jwks-url", help="URL where the client publishes its JWK Set (fetched, cached, "
                                 "re-fetched when it signs with a new kid).")
@click.option("--scope", required=True, help='SMART system scopes, space-separated, e.g. '
                                             '"system/Observation.rs system/Patient.rs".')
@click.option("--site", help="The site whose data the client may reach (default: every site; "
                             "the coordinating centre).")
@click.option("--policy", help="An exchange policy (mappings/exchange/NAME.yaml) everything the client "
                               "reads, searches and exports goes through: the coordinating centre's client "
                               "at a site. It may not write.")
@click.option("--policy-dir", type=click.Path(file_okay=False, path_type=pathlib.Path), default=POLICY_DIR,
              show_default=True, help="Where the exchange policies are.")
@DB_OPTION
def add(name: str, jwks_file: pathlib.Path | None, jwks_url: str | None, scope: str,
        site: str | None, policy: str | None, policy_dir: pathlib.Path, db: str) -> None:
    """Register client NAME (its client_id) with its public keys and scopes."""
    if (jwks_file is None) == (jwks_url is None):
        raise click.UsageError("give exactly one of --jwks FILE and --jwks-url URL")
    if not name or not set(name) <= _NAME_CHARS or len(name) > 128:
        raise click.BadParameter("letters, digits, '-', '.', '_' only, at most 128", param_hint="NAME")
    if site is not None and (not site or not set(site) <= _NAME_CHARS or len(site) > 64):
        raise click.BadParameter("letters, digits, '-', '.', '_' only, at most 64", param_hint="--site")
    try:
        scopes = _check_scopes(scope)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from None
    if policy is not None:
        try:
            load_policy(policy_path(policy_dir, policy))
        except SpecError as exc:
            raise click.BadParameter(str(exc), param_hint="--policy") from None
    jwks = None
    if jwks_file is not None:
        try:
            keys = parse_jwks(jwks_file.read_bytes(), require_kid=True)
        except ValueError as exc:
            raise click.BadParameter(f"{jwks_file}: {exc}", param_hint="--jwks") from None
        jwks = json.dumps(keys.as_dict(private=False))
    url = _check_url(jwks_url) if jwks_url else None
    try:
        with _registry(db) as registry:
            registry.add_client(ClientRecord(name, " ".join(scopes), jwks, url, site, policy=policy))
    except DuplicateClient as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"client {name} registered: scope {' '.join(scopes)}; "
               f"{'site ' + site if site else 'every site (coordinating centre)'}"
               f"{'; through the exchange policy ' + policy if policy else ''}")


@clients.command("list")
@DB_OPTION
def list_(db: str) -> None:
    """The registered clients: name, site, scopes, keys, status."""
    with _registry(db) as registry:
        found = registry.list_clients()
    for c in found:
        status = f"revoked {c.revoked_at}" if c.revoked else "active"
        keys = c.jwks_url or "inline JWKS"
        click.echo(f"{c.name}\t{c.site or '(all sites)'}\t{c.scope}\t{keys}\t{status}"
                   f"{chr(9) + 'policy ' + c.policy if c.policy else ''}")


@clients.command("revoke")
@click.argument("name")
@DB_OPTION
def revoke(name: str, db: str) -> None:
    """Revoke client NAME: no new tokens; its current ones stop working within seconds
    (AUTH_CLIENT_CACHE_SECONDS)."""
    with _registry(db) as registry:
        done = registry.revoke_client(name)
    if not done:
        raise click.ClickException(f"no active client named {name!r}")
    click.echo(f"client {name} revoked")
