"""The centre's side of a site's Bulk Data server: its token (SMART Backend Services,
private_key_jwt with Authlib), the kick-off (`$export`, `_since`), the polling (honouring
`Retry-After`, showing `X-Progress`, backing off on 5xx and timeouts), each file streamed to
disk, and the job's end. Nothing here knows the centre's store (adapter/exchange/pull.py does).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from adapter.errors import AdapterError
from adapter.exchange.policy import Policy
from adapter.private import open_private

__all__ = ["PullOptions", "PullFailed", "JobGone", "SiteClient", "load_client_key", "kick_off", "wait_for_manifest", "is_manifest",
           "download"]

log = logging.getLogger("adapter.exchange.pull")
_CHUNK = 1 << 16


class PullFailed(AdapterError):
    """The site could not be pulled (after the retries); nothing partial was loaded."""


class _TooLarge(AdapterError):
    pass


class JobGone(PullFailed):
    """The site no longer has the export job (expired, failed, cancelled): start anew."""


@dataclass(frozen=True)
class PullOptions:
    site: str
    base: str  # the site's FHIR base, e.g. https://site-a.example.org/fhir
    client_id: str
    key: Key
    policy: Policy
    state: pathlib.Path  # the centre's exchange folder: <site>/ pending pulls, quarantine/
    since: str | None = "auto"  # "auto": the last successful pull's transactionTime; None: all
    group: str | None = None  # a Group-level export of that Group (e.g. site-a-cohort)
    scope: str = "system/*.rs"
    timeout: float = 30.0  # seconds per HTTP request
    max_wait: float = 3600.0  # seconds to wait for the export to be ready
    retries: int = 5  # per request, on 429, 5xx, connection errors and timeouts
    max_file_bytes: int = 8 << 30  # a file larger than this is refused (a site cannot fill the disk)
    # `--since auto` asks from this many seconds before the last transactionTime: a write stamps
    # lastUpdated before it commits, so one that committed after the last export began could
    # carry an earlier time. What comes twice is unchanged and writes nothing.
    overlap: float = 60.0
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # processes verifying a file's lines


def load_client_key(path: pathlib.Path) -> Key:
    """The client's private key (RS384 or ES384): a JWK, a JWK Set holding one private key, or a
    PEM file (PKCS#8 or the traditional RSA/EC form, as openssl writes them; its assertions then
    name no kid, so the client's registered set must hold one key of its algorithm)."""
    raw = path.read_bytes()
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            key = _pem_key(raw)
        else:
            data = json.loads(raw)
            key = KeySet.import_key_set(data).keys[0] if "keys" in data else (
                RSAKey.import_key(data) if data.get("kty") == "RSA" else ECKey.import_key(data))
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, JoseError) as exc:
        # a PEM file given to json.loads said only "Expecting value: line 1 column 1"
        raise ValueError(f"{path}: not a private key this command reads (a JWK, a JWK Set or a PEM "
                         f"private key, RSA or EC P-384): {exc}") from None
    if not key.is_private:
        raise ValueError(f"{path} holds no private key")
    return key


def _pem_key(raw: bytes) -> Key:
    try:
        return RSAKey.import_key(raw)
    except (ValueError, TypeError, JoseError):
        return ECKey.import_key(raw)


class SiteClient:
    """HTTP to one site: a session with retries, and a token renewed before it expires."""

    def __init__(self, options: PullOptions) -> None:
        self.options = options
        self.http = requests.Session()
        retry = Retry(total=options.retries, connect=options.retries, read=options.retries,
                      status=options.retries, backoff_factor=0.5, backoff_max=30,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET", "POST", "DELETE"),
                      respect_retry_after_header=True, raise_on_status=False)
        self.retry = retry
        self.http.mount("http://", HTTPAdapter(max_retries=retry))
        self.http.mount("https://", HTTPAdapter(max_retries=retry))
        self._token: dict[str, Any] = {}

    def _token_url(self) -> str:
        url = f"{self.options.base}/.well-known/smart-configuration"
        answer = _check(self.get(url, auth=False), f"{self.options.site}: {url}", 200)
        try:
            return str(answer.json()["token_endpoint"])
        except (ValueError, KeyError, TypeError):
            raise PullFailed(f"{self.options.site}: {url} names no token_endpoint") from None

    def headers(self) -> dict[str, str]:
        if not self._token or self._token["expires_at"] - time.time() < 60:
            url = self._token_url()
            key = self.options.key
            alg = "RS384" if isinstance(key, RSAKey) else "ES384"
            # a PEM key has no kid: the site then takes the client's one key of that algorithm
            auth = PrivateKeyJWT(url, alg=alg, headers={"kid": key.kid} if key.kid else None,
                                 claims={"exp": int(time.time()) + 240})
            with OAuth2Session(self.options.client_id, key, token_endpoint_auth_method=auth,
                               scope=self.options.scope) as oauth:
                oauth.mount("http://", HTTPAdapter(max_retries=self.retry))
                oauth.mount("https://", HTTPAdapter(max_retries=self.retry))
                token = oauth.fetch_token(url, timeout=self.options.timeout)
            self._token = {"access_token": token["access_token"],
                           "expires_at": time.time() + float(token.get("expires_in", 300))}
        return {"Authorization": f"Bearer {self._token['access_token']}", "Accept": "application/fhir+json"}

    def get(self, url: str, auth: bool = True, **kwargs: Any) -> requests.Response:
        try:
            return self.http.get(url, headers={**(self.headers() if auth else {}), **kwargs.pop("headers", {})},
                                 timeout=self.options.timeout, **kwargs)
        except requests.RequestException as exc:
            raise PullFailed(f"{self.options.site}: {url}: {type(exc).__name__}: {exc}") from None

    def delete(self, url: str) -> None:
        try:
            self.http.delete(url, headers=self.headers(), timeout=self.options.timeout)
        except requests.RequestException:
            pass  # the site removes the job's files when they expire anyway


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _same_site(site: SiteClient, url: str, what: str) -> str:
    """`url` if it is on the site's own origin: the centre's token goes nowhere else, whatever
    a manifest or a Content-Location names."""
    if _origin(url) != _origin(site.options.base):
        raise PullFailed(f"{site.options.site}: {what} {url} is not on the site's origin "
                         f"({site.options.base}): not followed, the token is not sent there")
    return url


def _check(answer: requests.Response, what: str, *expected: int) -> requests.Response:
    if answer.status_code not in expected:
        text = answer.text[:300].replace("\n", " ")
        raise PullFailed(f"{what}: HTTP {answer.status_code}: {text}")
    return answer


def is_manifest(manifest: Any) -> bool:
    """A Bulk Data manifest as the pull relies on it: a transactionTime that is a full instant,
    output and deleted as lists of {type, url}."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("transactionTime"), str):
        return False
    try:
        when = datetime.fromisoformat(manifest["transactionTime"].replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None or len(manifest["transactionTime"]) < 20:
        return False
    for key in ("output", "deleted"):
        items = manifest.get(key, [])
        if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("url"), str) and isinstance(i.get("type"), str) for i in items):
            return False
    return True


def kick_off(site: SiteClient, since: str | None) -> str:
    options = site.options
    path = f"Group/{options.group}/$export" if options.group else "$export"
    query = {"_since": since} if since else {}
    url = f"{options.base}/{path}" + (f"?{urlencode(query)}" if query else "")
    answer = _check(site.get(url, headers={"Prefer": "respond-async"}), f"{options.site}: kick-off {url}", 202)
    location = answer.headers.get("Content-Location")
    if not location:
        raise PullFailed(f"{options.site}: the kick-off gave no Content-Location")
    return _same_site(site, urljoin(url, location), "the export's status URL")


def wait_for_manifest(site: SiteClient, status_url: str, say: Callable[[str], None]) -> dict[str, Any]:
    deadline, delay = time.monotonic() + site.options.max_wait, 1.0
    while True:
        answer = site.get(status_url)
        if answer.status_code == 200:
            try:
                manifest = answer.json()
                if is_manifest(manifest):
                    return manifest
            except ValueError:
                pass
            raise PullFailed(f"{site.options.site}: the export's manifest is no Bulk Data manifest")
        if answer.status_code in (404, 410):
            raise JobGone(f"{site.options.site}: the export job is gone (HTTP {answer.status_code}); "
                           "the next pull starts a new one")
        _check(answer, f"{site.options.site}: export status", 202)
        if answer.headers.get("X-Progress"):
            say(f"{site.options.site}: {answer.headers['X-Progress']}")
        if time.monotonic() > deadline:
            raise PullFailed(f"{site.options.site}: the export was not ready within {site.options.max_wait:.0f} s")
        retry_after = answer.headers.get("Retry-After", "")
        delay = float(retry_after) if retry_after.isdigit() else min(delay * 1.5, 30.0)
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())) or 0.1)


def download(site: SiteClient, url: str, path: pathlib.Path) -> str:
    """Stream one file to disk (a .part renamed when whole); its SHA-256."""
    _same_site(site, url, "the manifest's file")
    for attempt in range(site.options.retries + 1):
        sha, size = hashlib.sha256(), 0
        try:
            with site.http.get(url, headers={**site.headers(), "Accept": "application/fhir+ndjson"},
                               timeout=site.options.timeout, stream=True) as answer:
                if answer.status_code in (404, 410):
                    raise JobGone(f"{site.options.site}: {url} is gone (HTTP {answer.status_code}); "
                                   "the next pull starts a new export")
                _check(answer, f"{site.options.site}: download {url}", 200)
                with open_private(path.with_name(path.name + ".part"), "wb") as out:
                    for chunk in answer.iter_content(_CHUNK):
                        size += len(chunk)
                        if size > site.options.max_file_bytes:
                            raise _TooLarge(f"{site.options.site}: {url} is larger than "
                                            f"{site.options.max_file_bytes} bytes: refused")
                        sha.update(chunk)
                        out.write(chunk)
            os.replace(path.with_name(path.name + ".part"), path)
            return sha.hexdigest()
        except JobGone:
            raise
        except _TooLarge as exc:
            path.with_name(path.name + ".part").unlink(missing_ok=True)
            raise PullFailed(str(exc)) from None
        except (requests.RequestException, PullFailed) as exc:
            if attempt == site.options.retries:
                raise PullFailed(f"{site.options.site}: download {url}: {exc}") from None
            time.sleep(min(0.5 * 2 ** attempt, 30))
    raise AssertionError("unreachable")
