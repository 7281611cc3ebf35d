"""`fhir-adapter serve`: the checks of its address and options, and the gunicorn command line.

The host is parsed with `ipaddress`, never matched as text: `0:0::1`, `[::1]` and `::ffff:7f00:1`
are all spellings of addresses, and a text check let `0:0::1` bind every interface (gunicorn read
the unbracketed `0:0::1:8080` as host `0`).
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import click

__all__ = ["Listen", "parse_host", "check_base_url", "worker_env", "gunicorn_args"]

GUNICORN_CONFIG = "python:adapter.gateway.gunicorn_conf"


@dataclass(frozen=True)
class Listen:
    bind: str  # gunicorn's --bind value: host:port, [v6]:port
    loopback: bool


def parse_host(host: str, port: int) -> Listen:
    """An IP literal (v4 or v6, bracketed or not) or `localhost`; anything else is refused, since
    a name may resolve to a public address and the loopback check would then be a guess."""
    if host == "localhost":
        return Listen(f"localhost:{port}", True)
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        raise click.UsageError(
            f"--host {host!r} is not an IP address: give one (127.0.0.1, ::1, 0.0.0.0, a "
            "network interface's address) or localhost") from None
    mapped = getattr(address, "ipv4_mapped", None)
    loopback = address.is_loopback or bool(mapped and mapped.is_loopback)
    shown = f"[{address.compressed}]" if address.version == 6 else address.compressed
    return Listen(f"{shown}:{port}", loopback)


def check_base_url(base_url: str | None) -> str | None:
    """An absolute http(s) URL without query or fragment, without its trailing slash."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise click.UsageError(f"--base-url {base_url!r}: expected an absolute http(s) URL such as "
                               "https://fhir.example.org/fhir (no query, no fragment)")
    return base_url.rstrip("/")


def worker_env(auth: bool, audit: bool | None, base_url: str | None, cors: tuple[str, ...]) -> dict[str, str]:
    """What the gunicorn workers read in adapter.gateway.app (they are a new process image)."""
    env = {}
    if auth:
        env["FHIR_ADAPTER_AUTH"] = "on"
    if audit is not None:
        env["FHIR_ADAPTER_AUDIT"] = "on" if audit else "off"
    if base_url:
        env["FHIR_ADAPTER_BASE_URL"] = base_url
    if cors:
        env["FHIR_ADAPTER_CORS_ORIGINS"] = ",".join(cors)
    return env


def gunicorn_args(gunicorn: str, listen: Listen, workers: int, timeout: str,
                  certfile: str | None, keyfile: str | None) -> list[str]:
    if bool(certfile) != bool(keyfile):
        raise click.UsageError("--certfile and --keyfile go together")
    tls = ["--certfile", os.path.abspath(certfile), "--keyfile", os.path.abspath(keyfile)] \
        if certfile and keyfile else []
    # Request lines up to gunicorn's maximum, so that the gateway's own URL limit (an
    # OperationOutcome) applies before gunicorn's plain-text 414. The config module replaces the
    # Server banner and flushes the audit queue when a worker exits.
    return [gunicorn, "--config", GUNICORN_CONFIG, "--bind", listen.bind, "--workers", str(workers),
            "--timeout", timeout, "--limit-request-line", "8190", *tls,
            "--no-control-socket", "--access-logfile", "-", "--log-level", "warning",
            "adapter.gateway.app:create_app()"]
