"""What gunicorn itself answers and logs under `fhir-adapter serve` (adapter/gateway/gunicorn_conf.py):
its own errors (a malformed request line, a request line or headers past its limits) as
OperationOutcomes, and access lines that name query parameters without their values."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
from urllib.parse import urlsplit

import pytest
import requests

from conftest import wait_until_serving
from test_serve_security import CLI, _free_port


def _raw(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("request_bytes, status, code", [
    (b"GARBAGE\r\n\r\n", 400, "structure"),
    (b"GET /fhir/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "too-costly"),
    (b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(120)) + b"\r\n",
     431, "too-costly"),
    (b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n", 400, "structure"),
], ids=["request line", "request line too long", "too many headers", "header name"])
def test_gunicorns_own_errors_are_operation_outcomes(served, request_bytes, status, code):
    answered, headers, body = _raw(served, request_bytes)
    assert answered == status, body[:300]
    assert headers["Content-Type"] == "application/fhir+json" and int(headers["Content-Length"]) == len(body)
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == code
    assert requests.get(f"{served}/metadata", timeout=30).status_code == 200  # the worker still serves


def test_the_access_log_names_parameters_without_their_values(tmp_path: pathlib.Path) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([CLI, "serve", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--workers", "1",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                env=dict(os.environ))
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        wait_until_serving(f"{base}/metadata")
        requests.get(f"{base}/Patient?identifier=urn:sid|SECRET-MRN&birthdate=2019-04-01", timeout=30,
                     headers={"Referer": f"{base}/Patient?name=SECRET-NAME"})
        requests.post(f"{base}/Patient/_search", data={"family": "SECRET-FORM"}, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert '"GET /fhir/Patient?identifier&birthdate HTTP/1.1" 200' in text, text
    assert "/fhir/Patient?name" in text and "POST /fhir/Patient/_search HTTP/1.1" in text
    assert "SECRET" not in text and "2019-04-01" not in text
