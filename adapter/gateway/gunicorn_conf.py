"""gunicorn settings that `fhir-adapter serve` loads with `--config python:adapter.gateway.gunicorn_conf`.

- The Server header: gunicorn writes `Server: gunicorn` from `gunicorn.http.wsgi.SERVER`, which
  each response reads when it is made; a neutral value there tells a scanner nothing about the
  software (the WSGI app cannot remove the header: gunicorn adds it after the app's own).
- gunicorn's own error answers (a malformed request line or header, a request line or headers
  past its limits: 400, 414, 431, ...), which never reach the app: an OperationOutcome, as every
  other error, in place of its HTML page. gunicorn writes them through `gunicorn.util.write_error`,
  looked up when called, like SERVER above.
- The access log: the path and the names of the query parameters, never their values (a search
  names identifiers, birth dates, codes): `logger_class`.
- worker_exit: a worker that stops (SIGTERM, restart) writes its queued audit events first.
"""
from __future__ import annotations

from typing import Any

import gunicorn.http.wsgi
import gunicorn.util
import orjson
from gunicorn.glogging import Logger

SERVER_HEADER = "fhir"
gunicorn.http.wsgi.SERVER = SERVER_HEADER  # type: ignore[attr-defined]

# http://hl7.org/fhir/issue-type for gunicorn's statuses; anything else is a server error
_ISSUE_CODES = {400: "structure", 403: "forbidden", 414: "too-costly", 417: "not-supported",
                431: "too-costly", 501: "not-supported"}


def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's error answer as a FHIR OperationOutcome (gunicorn.util.write_error's contract)."""
    text = f"{reason}: {mesg}" if mesg else reason
    if status_int >= 500 and status_int != 501:
        text = "internal server error; the error has been logged"
    body = orjson.dumps({"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": _ISSUE_CODES.get(status_int, "exception"), "diagnostics": text[:500]}]})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n")
    gunicorn.util.write_nonblock(sock, head.encode("latin-1", "replace") + body)


gunicorn.util.write_error = write_error


def redacted(target: str) -> str:
    """A request target (or a Referer) as the access log keeps it: the path and the names of the
    query parameters.

    Examples:
        >>> redacted("/fhir/Patient?identifier=urn:sid|A0001&birthdate=2019-01-01&_summary")
        '/fhir/Patient?identifier&birthdate&_summary'
        >>> redacted("/fhir/metadata")
        '/fhir/metadata'
    """
    path, sep, query = target.partition("?")
    if not sep:
        return path
    return f"{path}?" + "&".join(part.partition("=")[0] for part in query.split("&") if part)


class AccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, its access lines without query values (`%(r)s`, `%(q)s`, `%(f)s` and
    the `{...}e` / `{...}i` atoms that hold them)."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        atoms["r"] = f"{environ['REQUEST_METHOD']} {redacted(environ.get('RAW_URI', ''))} {environ['SERVER_PROTOCOL']}"
        atoms["q"] = redacted("?" + environ.get("QUERY_STRING", ""))[1:]
        atoms["f"] = redacted(environ.get("HTTP_REFERER", "-"))
        for key in ("{raw_uri}e", "{query_string}e", "{request_uri}e", "{referer}i", "{http_referer}e"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redacted(atoms[key]) if key != "{query_string}e" else atoms["q"]
        return atoms


logger_class = AccessLogger


def worker_exit(server: Any, worker: Any) -> None:
    from adapter.audit.writer import flush_all
    flush_all()
