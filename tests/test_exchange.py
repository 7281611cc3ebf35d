"""Multi-site exchange end to end: two sites and the coordinating centre, each its own store,
keys and live gateway (SMART Backend Services on), on SQLite and on PostgreSQL. The centre pulls
by Bulk Data through each site's exchange policy."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests

from adapter.exchange.scan import Needles
from adapter.store import open_store
from conftest import ROOT
from exchange_helpers import Throttle, topology


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _identifying(site: str) -> Needles:
    """The site's children's MRNs and full birth dates (from its source export) and record numbers."""
    needles = Needles.from_sources([(ROOT / "mappings" / "sites" / f"{site}.yaml",
                                     sorted((ROOT / "fixtures" / "sites" / site).glob("export.*")))])
    return needles


def _centre_bytes(url: str) -> list[bytes]:
    """Every version of every resource the centre holds."""
    from sqlalchemy import select

    from adapter.store.schema import history
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            return [row.data for row in conn.execute(select(history.c.data)) if row.data]
    finally:
        store.close()


@pytest.mark.slow
def test_the_centre_follows_each_site_and_nothing_identifying_leaves(kind, tmp_path):
    with topology(kind, tmp_path, ("site-a", "site-b")) as t:
        first = {site: t.pull(site) for site in ("site-a", "site-b")}
        for site, report in first.items():
            expected = t.shared(site)
            assert report.ok and report.since is None
            assert t.at_centre(site) == expected  # same ids, same content, nothing more
            assert report.received == Counter(rtype for rtype, _ in expected)
            assert {"Patient", "Observation", "Procedure", "ResearchStudy", "Group"} <= set(report.received)
            # the policy's doing: pseudonymous ids, the birth year at most, the age at enrolment as k
            # allows (years, or a band of them), the stamp
            patients = [r for (rtype, _), r in expected.items() if rtype == "Patient"]
            assert all(len(p.get("birthDate", "")) <= 4 for p in patients)
            ages = [e for p in patients for e in p.get("extension", [])]
            assert ages and all("valueRange" in e or e["valueAge"]["code"] in ("a", "mo") for e in ages)
            assert all(rid.startswith(f"{site}-") and "A0" not in rid and "B0" not in rid for _, rid in expected)
            # the site's Organization and Location go as references (not re-keyed; the policy drops
            # a reference's display): the centre has them, from the protocol's definitions
            authors = [a["who"] for (rtype, _), r in expected.items() if rtype == "Provenance" for a in r["agent"]
                       if a["type"]["coding"][0]["code"] == "author"]
            assert authors and all(who == {"reference": f"Organization/{site}"} for who in authors)
            study = next(r for (rtype, _), r in expected.items() if rtype == "ResearchStudy")
            assert study["site"] == [{"reference": f"Location/{site}"}]
            centre = t.gateways["centre"].store
            assert centre.read("Organization", site) and centre.read("Location", site)
            from adapter.fhir.search import parse_search
            pulls = centre.search(parse_search("Provenance", [
                ("agent", f"Organization/{site}"), ("_tag", f"http://ucmsc-cp.example.org/fhir/CodeSystem/exchange-pull|{site}")]))
            assert len(pulls.entries) == 1  # the centre's record of the pull names the site's Organization too

        # Nothing identifying reached the centre: every stored byte, MRNs, birth dates, record numbers.
        stored = _centre_bytes(t.urls["centre"])
        for site, letter in (("site-a", "A"), ("site-b", "B")):
            needles = _identifying(site)
            for number in range(1, 21):
                needles.add("identifier", f"{letter}{number:04d}")
            assert len(needles) > 40
            found = [f for data in stored for f in needles.findings(data, "centre")]
            assert found == []
        assert b"MRN" not in b"".join(stored)

        # Changes at site A: one Observation changed, one made, one deleted.
        site_a = t.gateways["site-a"].store
        from adapter.fhir.search import parse_search
        page = site_a.search(parse_search("Observation", [("code", "http://loinc.org|29463-7"), ("_count", "2")]))
        changed, gone = (json.loads(e.data) for e in page.entries)
        changed["valueQuantity"]["value"] = 99.5
        site_a.update(changed)
        made = {**changed, "id": changed["id"] + "-again"}
        made.pop("meta")
        site_a.update({**made, "meta": {"security": changed["meta"]["security"]}})
        site_a.delete("Observation", gone["id"])

        second = t.pull("site-a", overlap=0)  # _since exactly the last transactionTime: just the changes
        assert second.ok and second.since == first["site-a"].transaction_time
        # (and the quasi-identifier types whole, as every pull under a k-anonymous policy: unchanged)
        assert second.received == {"Observation": 2, "Patient": 20, "Condition": 20}
        assert second.deleted == 1 and second.written == 2 and second.unchanged == 40
        assert t.at_centre("site-a") == t.shared("site-a")
        assert any(r.get("valueQuantity", {}).get("value") == 99.5 for r in t.at_centre("site-a").values())

        # A pull again, by default from a minute before the last transactionTime (a late commit is
        # not missed): what comes again is unchanged; nothing is written or deleted.
        versions = {k: v["meta"] for k, v in t.at_centre("site-a").items()}
        third = t.pull("site-a")
        assert third.ok and third.since < second.transaction_time and sum(third.received.values()) > 2
        assert third.written == 0 and third.deleted == 0
        assert {k: v["meta"] for k, v in t.at_centre("site-a").items()} == versions
        assert t.at_centre("site-b") == t.shared("site-b")  # site A's pulls never touched site B's data

        _security(t)


def _security(t) -> None:
    site_a, site_b, centre = t.fhir("site-a"), t.fhir("site-b"), t.fhir("centre")
    at_a = {"Authorization": f"Bearer {t.token('site-a', 'centre')}", "Accept": "application/fhir+json"}
    # the centre's token at site A is nothing at site B, and a site's own client nothing at the centre
    assert requests.get(f"{site_b}/Patient", headers=at_a, timeout=30).status_code == 401
    ehr = {"Authorization": f"Bearer {t.token('site-a', 'ehr', 'system/*.rs')}"}
    assert requests.get(f"{centre}/Patient", headers=ehr, timeout=30).status_code == 401
    # the centre reads through the policy and writes nothing; the site's own client sees its data whole
    patients = requests.get(f"{site_a}/Patient?_count=1", headers=at_a, timeout=30).json()["entry"]
    assert len(patients[0]["resource"].get("birthDate", "")) <= 4  # the year at most, when k allows it
    own = requests.get(f"{site_a}/Patient?_count=1", headers=ehr, timeout=30).json()["entry"]
    assert len(own[0]["resource"]["birthDate"]) == 10
    wrote = requests.post(f"{site_a}/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
                          headers={**at_a, "Content-Type": "application/fhir+json"}, timeout=30)
    assert wrote.status_code == 403 and wrote.json()["resourceType"] == "OperationOutcome"
    # an export job is its client's: another client's token cannot poll it. A Group-level export
    # under the policy exports the cohort's children, under their shared ids.
    cohort = next(rid for rtype, rid in t.shared("site-a") if rtype == "Group")  # its shared id
    kick = requests.get(f"{site_a}/Group/{cohort}/$export?_type=Patient",
                        headers={**at_a, "Prefer": "respond-async"}, timeout=30)
    assert kick.status_code == 202
    assert requests.get(kick.headers["Content-Location"], headers=ehr, timeout=30).status_code == 403
    from test_authorisation import export_manifest
    centre_at_a = requests.Session()
    centre_at_a.headers.update(at_a)
    manifest = export_manifest(centre_at_a, kick.headers["Content-Location"])
    patients = requests.get(manifest["output"][0]["url"], headers=at_a, timeout=30).text.splitlines()
    shared = {rid for rtype, rid in t.shared("site-a") if rtype == "Patient"}
    assert {json.loads(line)["id"] for line in patients} == shared and len(shared) == 20
    # No oracle on what the policy withholds: not by stored id, nor by filtering or sorting on it.
    for path in ("Patient/site-a-A0001", "Group/site-a-cohort/$export", "Patient/site-a-A0001/$everything"):
        answer = requests.get(f"{site_a}/{path}", headers={**at_a, "Prefer": "respond-async"}, timeout=30)
        assert answer.status_code == 404, path
    for query in ("Patient?birthdate=2019-05-22", "Observation?subject=Patient/site-a-A0001",
                  "Patient?identifier=A0001", "Patient?_sort=birthdate", "Patient?_id=site-a-A0001",
                  "$export?_type=Patient&_typeFilter=Patient%3Fgender%3Dmale"):
        answer = requests.get(f"{site_a}/{query}", headers={**at_a, "Prefer": "respond-async"}, timeout=30)
        assert answer.status_code == 403 and answer.json()["resourceType"] == "OperationOutcome", query
    assert requests.get(f"{site_a}/Patient?_lastUpdated=gt2000-01-01&_count=1", headers=at_a,
                        timeout=30).status_code == 200


@pytest.mark.slow
def test_a_pull_killed_mid_download_ends_as_a_clean_pull(kind, tmp_path):
    proxy = Throttle()
    try:
        with topology(kind, tmp_path, ("site-b",), base_urls={"site-b": f"{proxy.root}/fhir"}) as t:
            proxy.target = t.gateways["site-b"].root
            command = [sys.executable, "-m", "adapter.cli", "exchange", "pull", "--site", "site-b",
                       "--from", f"{proxy.root}/fhir", "--client-id", "centre", "--key", str(t.key_file),
                       "--state", str(t.state), "--db", t.urls["centre"]]
            process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       env={**os.environ, "PYTHONPATH": str(ROOT)})
            def downloading() -> bool:  # the Observation file, part-way
                return any(p.stat().st_size > 0 for p in (t.state / "site-b").glob("*-Observation.ndjson.part"))
            deadline = time.monotonic() + 60
            while not downloading() and time.monotonic() < deadline:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            pending = json.loads((t.state / "site-b" / "pending.json").read_text())
            assert pending["status_url"] and not any(f.get("loaded") for f in pending["files"].values())
            assert t.at_centre("site-b") == {}  # nothing half-loaded
            fetched_before = dict(proxy.hits)

            proxy.slow = False
            report = t.pull("site-b", base=f"{proxy.root}/fhir")
            assert report.ok
            assert t.at_centre("site-b") == t.shared("site-b")
            assert report.received == Counter(rtype for rtype, _ in t.shared("site-b"))
            # the same export job went on; a file verified before the kill was not fetched again
            assert sum(1 for p in proxy.hits if p.endswith("/$export")) == 1
            patient_file = next(p for p in fetched_before if p.endswith("/Patient.ndjson"))
            assert proxy.hits[patient_file] == 1
            assert not (t.state / "site-b" / "pending.json").exists()

            # A manifest naming files on another host: not followed, the token not sent there.
            elsewhere = _Broken()
            proxy.rewrite = (proxy.root.encode(), elsewhere.root.encode())
            from adapter.exchange.pull import PullFailed
            with pytest.raises(PullFailed, match="not on the site's origin"):  # everything: files to name
                t.pull("site-b", base=f"{proxy.root}/fhir", since=None)
            assert elsewhere.hits == 0
    finally:
        proxy.close()


class _Broken:
    """A site that answers 503 to everything, or (silent) never answers."""

    def __init__(self, silent: bool = False) -> None:
        import http.server
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                if silent:
                    time.sleep(5)
                    return
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.slow
def test_a_failing_site_is_retried_reported_and_the_others_still_pull(kind, tmp_path):
    broken, silent = _Broken(), _Broken(silent=True)
    with topology(kind, tmp_path, ("site-b",)) as t:
        run = subprocess.run(
            [sys.executable, "-m", "adapter.cli", "exchange", "pull", "--site", "site-x", "--from", f"{broken.root}/fhir",
             "--site", "site-y", "--from", f"{silent.root}/fhir", "--site", "site-b", "--from", t.fhir("site-b"),
             "--client-id", "centre", "--key", str(t.key_file), "--retries", "2", "--timeout", "2",
             "--state", str(t.state), "--db", t.urls["centre"]],
            cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert run.returncode == 1
        assert "site-x: FAILED" in run.stderr and "HTTP 503" in run.stderr
        assert "site-y: FAILED" in run.stderr and "Timeout" in run.stderr
        assert broken.hits == 3  # the first try and two retries, backing off
        assert t.at_centre("site-b") == t.shared("site-b")
        status = subprocess.run([sys.executable, "-m", "adapter.cli", "exchange", "status", "--state", str(t.state),
                                 "--db", t.urls["centre"]], cwd=ROOT, capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert status.returncode == 1  # site-x and site-y are overdue: never pulled successfully
        lines = {line.split(":")[0]: line for line in status.stdout.splitlines()}
        assert "OVERDUE" in lines["site-x"] and "HTTP 503" in lines["site-x"]
        assert "OVERDUE" not in lines["site-b"] and "Observation" in lines["site-b"]


def test_a_file_that_fails_verification_is_refused_whole_and_quarantined(tmp_path):
    from adapter.exchange.arrival import Arrival, Refused
    from exchange_helpers import POLICY
    good = {"resourceType": "Patient", "id": "site-a-" + "0" * 32, "gender": "male", "birthDate": "2019-05",
            "meta": {"security": [{"system": "http://ucmsc-cp.example.org/fhir/CodeSystem/study-site", "code": "site-a"},
                                  POLICY.stamp]}}
    cases = {
        "full birth date": {**good, "birthDate": "2019-05-22"},
        "another site's label": {**good, "meta": {"security": [{"system": good["meta"]["security"][0]["system"],
                                                                "code": "site-b"}, good["meta"]["security"][1]]}},
        "an id of another namespace": {**good, "id": "site-b-" + "0" * 32},
        "an id of a site-a-north": {**good, "id": "site-a-north-" + "0" * 32},
        "a reference into another site": {**good, "link": [{"other": {"reference": "https://x.org/fhir/Patient/site-b-"
                                                                                 + "0" * 32}, "type": "seealso"}]},
        "the centre's own pull tag": {**good, "meta": {**good["meta"], "tag": [
            {"system": "http://ucmsc-cp.example.org/fhir/CodeSystem/exchange-pull", "code": "site-b"}]}},
        "a versioned reference with an empty version": {**good, "link": [{"other": {
            "reference": "Patient/site-b-" + "0" * 32 + "/_history/"}, "type": "seealso"}]},
        "a reference naming no resource": {**good, "link": [{"other": {"reference": "not a reference"},
                                                             "type": "seealso"}]},
        "nested too deeply": {**good, "extension": [{"url": "x", "valueString": "y"}], "contained": [
            json.loads("[" * 300 + "]" * 300)]},
        "no policy stamp": {**good, "meta": {"security": good["meta"]["security"][:1]}},
        "a name": {**good, "name": [{"family": "Doe"}]},
    }
    arrival = Arrival("site-a", POLICY, tmp_path / "quarantine")
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(json.dumps(good).encode() + b"\n")
    assert arrival.verify(path, "Patient") == 1
    for why, bad in cases.items():
        path.write_bytes(json.dumps(good).encode() + b"\n" + json.dumps(bad).encode() + b"\n")
        with pytest.raises(Refused) as refused:
            arrival.verify(path, "Patient")
        assert all(p.startswith("line 2: ") for p in refused.value.problems), why
        assert "2019-05-22" not in str(refused.value) and "Doe" not in str(refused.value)
    # a study id of site-a-north is not site-a's to write; nor a deletion of a type no site sends
    study = {"resourceType": "ResearchStudy", "id": "site-a-north-study", "status": "active", "meta": good["meta"]}
    path.write_bytes(json.dumps(study).encode() + b"\n")
    with pytest.raises(Refused, match="namespace"):
        arrival.verify(path, "ResearchStudy")
    deletions = tmp_path / "x.deleted.ndjson"
    deletions.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "PlanDefinition/site-a-plan"}}]}) + "\n")
    with pytest.raises(Refused, match="lets no site send"):
        arrival.verify_deletions(deletions)
    # a line longer than the bound is refused without being held whole
    import adapter.exchange.arrival as arrival_module
    path.write_bytes(json.dumps(good).encode() + b"\n" + b" " * 5000 + b"\n")
    original, arrival_module.MAX_LINE = arrival_module.MAX_LINE, 1000
    try:
        with pytest.raises(Refused, match="line 2: longer than 1000 bytes"):
            arrival.verify(path, "Patient")
    finally:
        arrival_module.MAX_LINE = original
    path.write_bytes(json.dumps(good).encode() + b"\n" + json.dumps(cases["a name"]).encode() + b"\n")
    with pytest.raises(Refused) as refused:
        arrival.verify(path, "Patient")
    where = arrival.refuse(path, refused.value)
    assert where.parent == tmp_path / "quarantine" / "site-a" and not path.exists()
    assert oct(where.stat().st_mode & 0o777) == "0o600"
    assert "line 2" in pathlib.Path(str(where) + ".why.txt").read_text()
    # the same file refused again is kept once
    path.write_bytes(where.read_bytes())
    assert arrival.refuse(path, refused.value) == where and not path.exists()


def test_a_manifest_must_say_its_transaction_time_as_an_instant():
    from adapter.exchange.site_client import is_manifest
    good = {"transactionTime": "2026-11-30T01:02:03.456Z", "output": [{"type": "Patient", "url": "https://s/x"}]}
    assert is_manifest(good)
    for bad in ({**good, "transactionTime": "2026"}, {**good, "transactionTime": "garbage"},
                {**good, "transactionTime": "2026-11-30T01:02:03"}, {**good, "output": [{"type": "Patient"}]},
                {**good, "deleted": "x"}, []):
        assert not is_manifest(bad), bad


def test_the_centres_key_may_be_a_pem_file(kind, tmp_path):
    """`exchange pull --key` with a PEM file said "Expecting value: line 1 column 1"."""
    from joserfc.jwk import import_key
    with topology(kind, tmp_path, ("site-b",)) as t:
        jwk = json.loads(t.key_file.read_text())
        pem = tmp_path / "centre.pem"
        pem.write_bytes(import_key(jwk.get("keys", [jwk])[0]).as_pem(private=True))
        junk = tmp_path / "centre.txt"
        junk.write_text("not a key\n")
        runs = {}
        for name, key in (("pem", pem), ("junk", junk)):
            runs[name] = subprocess.run(
                [sys.executable, "-m", "adapter.cli", "exchange", "pull", "--site", "site-b", "--from",
                 t.fhir("site-b"), "--client-id", "centre", "--key", str(key), "--state", str(t.state),
                 "--db", t.urls["centre"]], cwd=ROOT, capture_output=True, text=True, timeout=120,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert runs["pem"].returncode == 0, runs["pem"].stderr[-2000:]
        assert t.at_centre("site-b") == t.shared("site-b")
        assert runs["junk"].returncode == 1
        assert "a JWK, a JWK Set or a PEM private key" in runs["junk"].stderr
