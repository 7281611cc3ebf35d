"""The coordinating centre pulls a site: the Bulk Data Access IG (v2) client flow, authorised by
SMART Backend Services, into the centre's store.

token (private_key_jwt, Authlib) -> kick-off (`$export`, `_since`) -> polling (honouring
`Retry-After`, showing `X-Progress`, backing off on 5xx and timeouts) -> each NDJSON file
streamed to disk (constant memory) -> verified whole (adapter/exchange/arrival.py) -> loaded in
one transaction per file, or refused whole into quarantine -> deletions applied -> a Provenance
of the pull (site, transactionTime, policy versions, file digests).

Resumable: the pull's state is `<state>/<site>/pending.json`, replaced atomically after every
step. A pull killed at any point and run again goes on with the same export job, fetches no
file it has verified already, and loads no file twice (a file's transaction either committed,
and the state says so, or wrote nothing; loading a file again changes nothing either way).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import re
import time
from datetime import datetime, timedelta, timezone
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from adapter.exchange.arrival import Arrival, Refused, prepared_path
from adapter.exchange.policy import Policy
from adapter.exchange.pull_record import last_success, record_provenance
from adapter.fhir.dates import now_instant
from adapter.private import open_private, private_dir
from adapter.store.integrity import DanglingReferences
from adapter.store.repository import Repository

__all__ = ["PullOptions", "PullReport", "pull_site", "PullFailed", "load_client_key"]

log = logging.getLogger("adapter.exchange.pull")
_CHUNK = 1 << 16


class PullFailed(Exception):
    """The site could not be pulled (after the retries); nothing partial was loaded."""


class _TooLarge(Exception):
    pass


class _JobGone(PullFailed):
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


@dataclass
class PullReport:
    site: str
    transaction_time: str = ""
    since: str | None = None
    received: dict[str, int] = field(default_factory=dict)  # resources by type, verified and loaded
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    refused: list[str] = field(default_factory=list)  # quarantined files with the first reason
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.refused


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


class _Site:
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


def _same_site(site: _Site, url: str, what: str) -> str:
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


class _State:
    """pending.json of one site: the pull under way (0600, replaced atomically)."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = private_dir(folder)
        self.path = folder / "pending.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open_private(tmp) as out:
            out.write(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)

    def finish(self) -> None:
        for part in self.folder.glob("*.ndjson*"):
            part.unlink()
        self.path.unlink(missing_ok=True)
        self.data = {}


def pull_site(store: Repository, options: PullOptions, say: Callable[[str], None] = log.info) -> PullReport:
    """Pull one site into `store`; PullFailed when the site cannot be pulled."""
    started = time.monotonic()
    site = _Site(options)
    state = _State(options.state / options.site)
    report = PullReport(options.site)
    if not state.data.get("status_url"):
        since = _earlier(last_success(store, options.site), options.overlap) if options.since == "auto" \
            else options.since
        state.data = {"since": since, "status_url": _kick_off(site, since), "files": {}, "started": now_instant()}
        state.save()
    else:
        say(f"{options.site}: resuming the pull started {state.data['started']}")
    report.since = state.data["since"]
    try:
        return _pull(store, options, site, state, report, say, started)
    except _JobGone:
        state.finish()  # the next run starts a new export, from the same point
        raise


def _pull(store: Repository, options: PullOptions, site: _Site, state: _State, report: PullReport,
          say: Callable[[str], None], started: float) -> PullReport:
    manifest = state.data.get("manifest") or _wait(site, state.data["status_url"], say)
    if "manifest" not in state.data:
        state.data["manifest"] = manifest
        state.save()
    report.transaction_time = manifest["transactionTime"]
    others = frozenset(p.name for p in options.state.iterdir() if p.is_dir() and p.name not in (
        options.site, "quarantine"))  # every site pulled here has its folder
    arrival = Arrival(options.site, options.policy, options.state / "quarantine", workers=options.workers,
                      other_sites=others)
    items = [*((o, False) for o in manifest.get("output", [])), *((d, True) for d in manifest.get("deleted", []))]
    try:
        # Local names by place in the manifest: a site's URLs name nothing on the centre's disk.
        fetched = [(item, deleted, name) for index, (item, deleted) in enumerate(items)
                   if (name := _fetch(site, state, arrival, item, deleted, report, say,
                                      f"{index:04d}-{re.sub('[^A-Za-z]', '', item['type'])[:64]}"
                                      f"{'.deleted' if deleted else ''}.ndjson")) is not None]
    finally:
        arrival.close()
    _load_all(store, state, arrival, fetched, report, say)
    if report.ok and report.files:
        # The policies of every file, as verified in this run or in a run that was killed after
        # verifying some (a resumed run does not see those files' stamps again).
        policies = set(arrival.policies_seen).union(*(set(done.get("policies", ()))
                                                      for done in state.data["files"].values()))
        record_provenance(store, report, sorted(policies or {f"{options.policy.name}|{options.policy.version}"}),
                          options.base)
    # A pull with nothing new (a quiet site's nightly run) writes nothing: `--since auto` asks
    # from the same point again next time, and `exchange status` counts it as a success.
    # Done with this export either way: what passed is loaded, what did not is in quarantine; a
    # pull with refusals records no success, so the next one asks from the same point again.
    site.delete(state.data["status_url"])
    state.finish()
    report.seconds = time.monotonic() - started
    return report


def _earlier(instant: str | None, seconds: float) -> str | None:
    if instant is None or seconds <= 0:
        return instant
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00")) - timedelta(seconds=seconds)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _is_manifest(manifest: Any) -> bool:
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


def _kick_off(site: _Site, since: str | None) -> str:
    options = site.options
    path = f"Group/{options.group}/$export" if options.group else "$export"
    query = {"_since": since} if since else {}
    url = f"{options.base}/{path}" + (f"?{urlencode(query)}" if query else "")
    answer = _check(site.get(url, headers={"Prefer": "respond-async"}), f"{options.site}: kick-off {url}", 202)
    location = answer.headers.get("Content-Location")
    if not location:
        raise PullFailed(f"{options.site}: the kick-off gave no Content-Location")
    return _same_site(site, urljoin(url, location), "the export's status URL")


def _wait(site: _Site, status_url: str, say: Callable[[str], None]) -> dict[str, Any]:
    deadline, delay = time.monotonic() + site.options.max_wait, 1.0
    while True:
        answer = site.get(status_url)
        if answer.status_code == 200:
            try:
                manifest = answer.json()
                if _is_manifest(manifest):
                    return manifest
            except ValueError:
                pass
            raise PullFailed(f"{site.options.site}: the export's manifest is no Bulk Data manifest")
        if answer.status_code in (404, 410):
            raise _JobGone(f"{site.options.site}: the export job is gone (HTTP {answer.status_code}); "
                           "the next pull starts a new one")
        _check(answer, f"{site.options.site}: export status", 202)
        if answer.headers.get("X-Progress"):
            say(f"{site.options.site}: {answer.headers['X-Progress']}")
        if time.monotonic() > deadline:
            raise PullFailed(f"{site.options.site}: the export was not ready within {site.options.max_wait:.0f} s")
        retry_after = answer.headers.get("Retry-After", "")
        delay = float(retry_after) if retry_after.isdigit() else min(delay * 1.5, 30.0)
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())) or 0.1)


def _fetch(site: _Site, state: _State, arrival: Arrival, item: dict[str, Any], deleted: bool,
           report: PullReport, say: Callable[[str], None], name: str) -> str | None:
    """Download and verify one file (unless that was done before a restart); its name, or None
    when it was refused and quarantined."""
    url = item["url"]
    done = state.data["files"].setdefault(name, {})
    path = state.folder / name
    if done.get("loaded") or (done.get("verified") and path.exists()):
        return name
    prepared_path(path).unlink(missing_ok=True)  # what an earlier verification left is not this file's
    done["digest"] = _download(site, url, path)
    try:
        done["count"] = arrival.verify_deletions(path) if deleted else arrival.verify(path, item["type"])
        if not deleted:
            done["refers"] = sorted(arrival.types_referred - {item["type"]})
    except Refused as error:
        where = arrival.refuse(path, error)
        report.refused.append(f"{name}: {error.problems[0]} (quarantined: {where})")
        say(f"{site.options.site}: REFUSED {name}: {error}")
        state.data["files"].pop(name)
        state.save()
        return None
    done["verified"] = True
    done["policies"] = sorted(arrival.policies_seen)
    state.save()
    return name


def _load_all(store: Repository, state: _State, arrival: Arrival, fetched: list[tuple[dict[str, Any], bool, str]],
              report: PullReport, say: Callable[[str], None]) -> None:
    """Each verified file in one transaction. Files need no order: one whose references do not
    resolve yet (Procedure before BiologicallyDerivedProduct) waits for the others; the
    deletions come last. One that still does not resolve when nothing else can load is
    reported, not loaded, and the pull is not a success."""
    waiting = _in_reference_order(state, fetched)
    while waiting:
        later = []
        for item, deleted, name in waiting:
            done = state.data["files"][name]
            if not done.get("loaded"):
                path = state.folder / name
                try:
                    if deleted:
                        done["deleted"] = arrival.apply_deletions(store, path)
                    else:
                        done["written"], done["unchanged"] = arrival.load(store, path)
                except DanglingReferences as dangling:
                    later.append((item, deleted, name, dangling))
                    continue
                done["loaded"] = True
                state.save()
                path.unlink()
                say(f"{arrival.site}: {name}: {done['count']} verified and loaded")
            report.files[name] = done["digest"]
            _count(report, item, deleted, done)
        if len(later) == len(waiting):
            for _, _, name, why in later:
                report.refused.append(f"{name}: not loaded: {why.issues[0].diagnostics}")
            return
        waiting = [(item, deleted, name) for item, deleted, name, _ in later]


def _in_reference_order(state: _State, fetched: list[tuple[dict[str, Any], bool, str]]
                        ) -> list[tuple[dict[str, Any], bool, str]]:
    """Data files after the files of the types they refer to (as verification saw them), where
    that order exists, so that a file's transaction does not write all of it only to find a
    reference that does not resolve yet and roll back (holding what waits to resolve, as it
    goes); deletions last."""
    data = [f for f in fetched if not f[1]]
    ordered: list[tuple[dict[str, Any], bool, str]] = []
    while data:
        pending = {item["type"] for item, _, _ in data}
        ready = [f for f in data if not pending & set(state.data["files"][f[2]].get("refers", []))
                 - {f[0]["type"]}] or data[:1]  # a cycle: as they come, the others wait
        ordered.extend(ready)
        data = [f for f in data if f not in ready]
    return [*ordered, *(f for f in fetched if f[1])]


def _count(report: PullReport, item: dict[str, Any], deleted: bool, done: dict[str, Any]) -> None:
    if deleted:
        report.deleted += done.get("deleted", 0)
    else:
        report.received[item["type"]] = report.received.get(item["type"], 0) + done["count"]
        report.written += done.get("written", 0)
        report.unchanged += done.get("unchanged", 0)


def _download(site: _Site, url: str, path: pathlib.Path) -> str:
    """Stream one file to disk (a .part renamed when whole); its SHA-256."""
    _same_site(site, url, "the manifest's file")
    for attempt in range(site.options.retries + 1):
        sha, size = hashlib.sha256(), 0
        try:
            with site.http.get(url, headers={**site.headers(), "Accept": "application/fhir+ndjson"},
                               timeout=site.options.timeout, stream=True) as answer:
                if answer.status_code in (404, 410):
                    raise _JobGone(f"{site.options.site}: {url} is gone (HTTP {answer.status_code}); "
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
        except _JobGone:
            raise
        except _TooLarge as exc:
            path.with_name(path.name + ".part").unlink(missing_ok=True)
            raise PullFailed(str(exc)) from None
        except (requests.RequestException, PullFailed) as exc:
            if attempt == site.options.retries:
                raise PullFailed(f"{site.options.site}: download {url}: {exc}") from None
            time.sleep(min(0.5 * 2 ** attempt, 30))
    raise AssertionError("unreachable")

