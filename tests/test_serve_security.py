"""`serve` hardening: addresses parsed as addresses, a fixed public base URL for every link,
security headers, no gunicorn banner, CORS only for listed origins, TLS."""
from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import click
import pytest
import requests

from adapter.audit.trail import audit_events
from adapter.gateway.app import create_app
from adapter.cli.serve_options import parse_host
from adapter.store.sql_store import SqlStore
from conftest import observation, wait_until_serving

CLI = str(pathlib.Path(sys.executable).parent / "fhir-adapter")
FHIR = {"Content-Type": "application/fhir+json"}


@pytest.mark.parametrize("host, bind, loopback", [
    ("127.0.0.1", "127.0.0.1:8080", True),
    ("::1", "[::1]:8080", True),
    ("[::1]", "[::1]:8080", True),
    ("0:0::1", "[::1]:8080", True),  # was bound as 0.0.0.0
    ("0:0:0:0:0:0:0:1", "[::1]:8080", True),
    ("localhost", "localhost:8080", True),
    ("0.0.0.0", "0.0.0.0:8080", False),
    ("::", "[::]:8080", False),
    ("[::]", "[::]:8080", False),
    ("10.1.2.3", "10.1.2.3:8080", False),
])
def test_hosts_are_parsed_as_addresses(host, bind, loopback):
    listen = parse_host(host, 8080)
    assert (listen.bind, listen.loopback) == (bind, loopback)


@pytest.mark.parametrize("host", ["example.org", "127.1", "0", "0x7f000001", "::1]", "[::1", "local host", ""])
def test_other_spellings_are_refused(host):
    with pytest.raises(click.UsageError, match="not an IP address"):
        parse_host(host, 8080)


@pytest.mark.parametrize("args, message", [
    (["--host", "example.org"], "not an IP address"),
    (["--host", "::"], "--auth"),
    (["--host", "[::]"], "--auth"),
    (["--host", "127.0.0.1", "--base-url", "fhir.example.org"], "absolute http(s) URL"),
])
def test_serve_refuses_before_starting(args, message, tmp_path):
    result = subprocess.run([CLI, "serve", "--db", f"sqlite:///{tmp_path / 'a.db'}", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "a.db").exists()  # refused before anything was done


def test_security_headers_over_http(served):
    r = requests.get(f"{served}/Patient/p1", timeout=30)
    assert r.status_code == 200
    assert "gunicorn" not in r.headers.get("Server", "").lower()
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"
    missing = requests.get(f"{served}/Patient/nobody", timeout=30)
    assert missing.headers["Cache-Control"] == "no-store" and missing.headers["X-Content-Type-Options"] == "nosniff"
    assert "gunicorn" not in missing.headers.get("Server", "").lower()
    metadata = requests.get(f"{served}/metadata", timeout=30)
    assert "no-store" not in metadata.headers.get("Cache-Control", "")
    assert metadata.headers["X-Content-Type-Options"] == "nosniff"
    assert not any(h.lower().startswith("access-control-") for h in r.headers)  # CORS off by default


@pytest.fixture
def cors_client(db_url, tmp_path):
    app = create_app({"DATABASE_URL": db_url, "EXPORT_DIR": str(tmp_path / "exports"), "REFERENTIAL_INTEGRITY": False,
                      "CORS_ORIGINS": "https://app.example.org, https://other.example.org/"})
    yield app.test_client()
    app.extensions["fhir_store"].close()


def test_cors_answers_only_listed_origins(cors_client):
    preflight = cors_client.options("/fhir/Observation", headers={
        "Origin": "https://app.example.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "prefer", "if-match", "if-none-match"} <= allowed
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    read = cors_client.get("/fhir/Patient", headers={"Origin": "https://other.example.org"})
    assert read.headers["Access-Control-Allow-Origin"] == "https://other.example.org"
    assert "Origin" in read.headers["Vary"]
    exposed = {h.strip() for h in read.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Location", "ETag", "Content-Location"} <= exposed
    for origin in ("https://evil.example", "https://app.example.org.evil.example", "null"):
        refused = cors_client.options("/fhir/Observation", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in refused.headers
        other = cors_client.get("/fhir/Patient", headers={"Origin": origin})
        assert not any(h.lower().startswith("access-control-") for h in other.headers.keys())


def test_without_origins_there_is_no_cors(client):
    r = client.options("/fhir/Observation", headers={"Origin": "https://app.example.org",
                                                     "Access-Control-Request-Method": "GET"})
    g = client.get("/fhir/Patient", headers={"Origin": "https://app.example.org"})
    for response in (r, g):
        assert not any(h.lower().startswith("access-control-") for h in response.headers.keys())


def test_every_link_comes_from_the_base_url_not_the_host_header(db_url, tmp_path, monkeypatch):
    base = "https://fhir.example.org/r4"
    monkeypatch.setenv("FHIR_ADAPTER_BASE_URL", base)  # what `serve --base-url` hands the workers
    app = create_app({"DATABASE_URL": db_url, "EXPORT_DIR": str(tmp_path / "exports"), "REFERENTIAL_INTEGRITY": False})
    client = app.test_client()
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", **FHIR}
    try:
        created = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=evil)
        updated = client.put("/fhir/Observation/o1", json=observation(id="o1"), headers=evil)
        client.put("/fhir/Observation/o2", json=observation(id="o2"), headers=evil)
        page = client.get("/fhir/Observation?_count=1", headers=evil).json
        second = client.get(next(link["url"] for link in page["link"] if link["relation"] == "next")
                            .replace(base, "/fhir"), headers=evil).json
        kick = client.get("/fhir/$export?_type=Observation", headers={**evil, "Prefer": "respond-async"})
        status_url = kick.headers["Content-Location"]
        for _ in range(100):
            status = client.get(status_url.replace(base, "/fhir"), headers=evil)
            if status.status_code == 200:
                break
            time.sleep(0.1)
        links = [created.headers["Location"], updated.headers["Location"], status_url,
                 *(link["url"] for bundle in (page, second) for link in bundle["link"]),
                 *(e["fullUrl"] for bundle in (page, second) for e in bundle["entry"]),
                 *(o["url"] for o in status.json["output"]), status.json["request"]]
        assert len(links) > 8
        for link in links:
            assert link.startswith(f"{base}/") and "evil" not in link, link
    finally:
        app.extensions["fhir_store"].close()


def _self_signed(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _serve(tmp_path: pathlib.Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([CLI, "serve", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--workers", "1", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path, env=dict(os.environ))


def _free_port(family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_with_tls(tmp_path):
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    proc = _serve(tmp_path, "--port", str(port), "--certfile", str(cert), "--keyfile", str(key))
    try:
        r = None
        deadline = time.monotonic() + 90
        while r is None:
            try:
                r = requests.get(f"https://127.0.0.1:{port}/fhir/metadata", verify=str(cert), timeout=10)
            except requests.exceptions.SSLError:
                raise
            except requests.RequestException:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["resourceType"] == "CapabilityStatement"
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=10)  # no plain HTTP beside it
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.slow
def test_serve_binds_ipv6_loopback_only(tmp_path):
    try:
        port = _free_port(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    proc = _serve(tmp_path, "--host", "0:0::1", "--port", str(port))
    try:
        assert wait_until_serving(f"http://[::1]:{port}/fhir/metadata").status_code == 200
        with pytest.raises(requests.ConnectionError):  # not 0.0.0.0: nothing on IPv4
            requests.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.slow
def test_serve_auth_turns_on_authorisation_and_with_it_the_audit(tmp_path):
    port = _free_port()
    proc = _serve(tmp_path, "--port", str(port), "--auth")
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/fhir/metadata")
        r = requests.get(f"http://127.0.0.1:{port}/fhir/Patient", timeout=30)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    store = SqlStore(f"sqlite:///{tmp_path / 'a.db'}", migrate=False)
    try:
        (event,) = audit_events(store)
        assert event["outcome"] == "4" and event["outcomeDesc"].startswith("401")
    finally:
        store.close()
