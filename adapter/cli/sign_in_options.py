"""`fhir-adapter serve`'s options for signing in to the pages: the hospital's OpenID Connect
provider, the groups -> access mapping, and the pasted-token sign-in (development). They reach
the gunicorn workers as environment variables (adapter/gateway/sign_in_setup.py reads them)."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from adapter.auth.roles import RolesError, load_roles

__all__ = ["SignInOptions", "sign_in_options"]


@dataclass(frozen=True)
class SignInOptions:
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret_file: str | None = None
    oidc_roles: str | None = None
    token_sign_in: bool | None = None  # None: on for a loopback address only

    def worker_env(self, loopback: bool, auth: bool) -> dict[str, str]:
        """The workers' environment; a UsageError for a set-up that cannot work."""
        token = loopback if self.token_sign_in is None else self.token_sign_in
        env = {"FHIR_ADAPTER_TOKEN_SIGN_IN": "on" if token else "off"}
        if not self.oidc_issuer:
            return env
        if not auth:
            raise click.UsageError("--oidc-issuer needs --auth: without it the pages need no sign-in")
        if not self.oidc_client_id or not self.oidc_roles:
            raise click.UsageError("--oidc-issuer needs --oidc-client-id and --oidc-roles")
        if not self.oidc_client_secret_file and not os.environ.get("FHIR_ADAPTER_OIDC_CLIENT_SECRET"):
            raise click.UsageError("the OpenID Connect client's secret: --oidc-client-secret-file, or "
                                   "FHIR_ADAPTER_OIDC_CLIENT_SECRET in the environment")
        try:
            load_roles(self.oidc_roles)  # now, not in each worker's first request
        except RolesError as error:
            raise click.UsageError(f"--oidc-roles: {error}") from None
        env.update(FHIR_ADAPTER_OIDC_ISSUER=self.oidc_issuer, FHIR_ADAPTER_OIDC_CLIENT_ID=self.oidc_client_id,
                   FHIR_ADAPTER_OIDC_ROLES=os.path.abspath(self.oidc_roles))
        if self.oidc_client_secret_file:
            env["FHIR_ADAPTER_OIDC_CLIENT_SECRET_FILE"] = os.path.abspath(self.oidc_client_secret_file)
        return env


def sign_in_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the options to `command`, handing them to it as one `sign_in` argument."""
    @click.option("--oidc-issuer", envvar="FHIR_ADAPTER_OIDC_ISSUER", help="The pages' sign-in: the hospital's "
                  "OpenID Connect provider's issuer URL, e.g. https://login.hospital.example/realms/staff "
                  "(its discovery document is read from there; env FHIR_ADAPTER_OIDC_ISSUER). Needs --auth.")
    @click.option("--oidc-client-id", envvar="FHIR_ADAPTER_OIDC_CLIENT_ID",
                  help="This server's client id at the provider (env FHIR_ADAPTER_OIDC_CLIENT_ID).")
    @click.option("--oidc-client-secret-file", type=click.Path(exists=True, dir_okay=False),
                  help="A file holding the client's secret (or env FHIR_ADAPTER_OIDC_CLIENT_SECRET; never on "
                  "the command line, where `ps` shows it).")
    @click.option("--oidc-roles", type=click.Path(exists=True, dir_okay=False), envvar="FHIR_ADAPTER_OIDC_ROLES",
                  help="The provider's groups -> what each may see (YAML; mappings/sign-in/example-roles.yaml).")
    @click.option("--token-sign-in/--no-token-sign-in", default=None, help="Let the pages be signed in to "
                  "with a pasted access token (development). Default: on for a loopback address only.")
    @functools.wraps(command)
    def wrapped(*args: Any, oidc_issuer: str | None, oidc_client_id: str | None,
                oidc_client_secret_file: str | None, oidc_roles: str | None, token_sign_in: bool | None,
                **kwargs: Any) -> Any:
        return command(*args, sign_in=SignInOptions(oidc_issuer, oidc_client_id, oidc_client_secret_file,
                                                     oidc_roles, token_sign_in), **kwargs)
    return wrapped
