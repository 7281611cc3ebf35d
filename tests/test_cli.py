"""The fhir-adapter console script, run as a user would."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest
import requests

from adapter.study.build import build_resources
from adapter.protocol.spec import load_spec
from conftest import ROOT, migrated_store, observation, wait_until_serving

CLI = [str(pathlib.Path(sys.executable).parent / "fhir-adapter")]


def run(*args, **kw):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=120, **kw)


def test_help_lists_the_commands():
    out = run("--help").stdout
    for command in ("serve", "init-db", "upgrade-db", "load", "demo", "protocol"):
        assert command in out


@pytest.mark.slow
def test_init_db_then_load_reports_rejections(tmp_path, db_url):
    assert run("init-db", "--db", db_url).returncode == 0
    good = tmp_path / "good.ndjson"
    good.write_text("\n".join(json.dumps(observation(id=f"o{i}")) for i in range(3)) + "\n")
    bad = tmp_path / "bundle.json"
    bad.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": observation(id="ok")}, {"resource": observation(id="bad", status="done")}]}))
    broken = tmp_path / "broken.ndjson"
    # the observations' Patient/p1 comes last: loaded, then the deferred ones that name it
    broken.write_text(json.dumps(observation(id="b1")) + "\n{oops\n"
                      + json.dumps({"resourceType": "Patient", "id": "p1"}) + "\n")
    result = run("load", "--db", db_url, str(good), str(bad), str(broken))
    assert result.returncode == 1
    assert "8 read, 6 loaded, 2 rejected" in result.stdout
    assert f"{bad} entry[1]: Observation.status: 'done'" in result.stderr
    assert f"{broken} line 2" in result.stderr


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def demo_db(request, tmp_path_factory):
    """A migrated store (as db_url gives) after `demo --no-serve`, and that run: made once a
    store for the two tests below (the demo's ingests take 8-14 s), which only read it."""
    with migrated_store(request, tmp_path_factory) as url:
        yield url, run("demo", "--db", url, "--no-serve")


@pytest.mark.slow
def test_demo_no_serve_loads_the_demo_data(demo_db):
    _, result = demo_db
    assert result.returncode == 0, result.stderr
    built = build_resources(load_spec(ROOT / "mappings" / "protocol" / "ucmsc-cp-v1.yaml"))
    assert f"protocol: {len(built)} resources from ucmsc-cp-v1.yaml" in result.stdout
    # a care plan for every child on study: 3 demo children, and sites A-E's 20 + 17 + 15 + 12 + 9
    assert "37 read, 37 loaded, 0 rejected" in result.stdout and "76 care plans" in result.stdout
    assert "site site-d: 120 rows read: 114 accepted, 2 with warnings, 3 partly accepted, 3 rejected" in result.stdout


def test_serve_refuses_a_public_address_without_the_flag(db_url):
    result = run("serve", "--host", "0.0.0.0", "--db", db_url)
    assert result.returncode != 0
    assert "--insecure-no-auth" in result.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_runs_gunicorn_workers(demo_db, tmp_path):
    db_url, _ = demo_db  # the demo's data, loaded by `demo --no-serve`
    port = _free_port()
    proc = subprocess.Popen(CLI + ["serve", "--port", str(port), "--db", db_url, "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "HOME": str(tmp_path)})
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        r = wait_until_serving(f"{base}/Patient/demo-child-01")
        assert r.status_code == 200 and r.json()["id"] == "demo-child-01"
        assert requests.get(f"{base}/metadata", timeout=5).json()["fhirVersion"] == "4.0.1"
        assert not (tmp_path / ".gunicorn").exists()  # no control socket under the home directory
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("url,words", [
    ("postgresql://nobody@127.0.0.1:1/none", "database error: "),
    ("mysql://somewhere/db", "unsupported database URL 'mysql'"),
])
def test_database_failures_are_one_line_not_a_traceback(url, words):
    result = run("init-db", "--db", url)
    assert result.returncode == 1
    assert words in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_database_url_is_shown_without_its_password():
    from sqlalchemy.engine import make_url

    from conftest import postgres_schema
    with postgres_schema() as url:
        secret = "pw-that-must-not-show"
        with_password = make_url(url).set(password=secret).render_as_string(hide_password=False)
        for command in ("init-db", "upgrade-db"):
            result = run(command, "--db", with_password)
            assert result.returncode == 0, result.stderr
            assert "store ready: postgresql://root:***@" in result.stdout
            assert secret not in result.stdout + result.stderr
        proc = subprocess.Popen(CLI + ["serve", "--port", str(_free_port()), "--db", with_password],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            first = proc.stdout.readline()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert first.startswith("store ready: postgresql://root:***@") and secret not in first
