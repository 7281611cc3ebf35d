"""The client registry: `fhir-adapter clients add|list|revoke` and the replay cache."""
from __future__ import annotations

import json
import pathlib

from click.testing import CliRunner
from sqlalchemy import func, select

from adapter.cli import main
from adapter.store.clients import ClientRecord
from adapter.store.schema import auth_jti
from adapter.store.sql_store import SqlStore
from auth_helpers import EC_KEY, RSA_KEY, public_jwks


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_clients_add_list_revoke(db_url: str, tmp_path: pathlib.Path) -> None:
    jwks = tmp_path / "ehr.jwks.json"
    jwks.write_text(json.dumps(public_jwks(RSA_KEY, EC_KEY)))
    code, out = cli("clients", "add", "ehr-a", "--jwks", str(jwks), "--scope",
                    "system/Observation.rs system/Patient.read", "--site", "site-a", "--db", db_url)
    assert code == 0, out
    assert "ehr-a registered" in out and "site site-a" in out
    code, out = cli("clients", "add", "centre", "--jwks-url", "https://centre.example.org/jwks.json",
                    "--scope", "system/*.rs", "--db", db_url)
    assert code == 0, out
    code, out = cli("clients", "add", "ehr-a", "--jwks", str(jwks), "--scope", "system/*.rs", "--db", db_url)
    assert code != 0 and "registered already" in out
    code, out = cli("clients", "list", "--db", db_url)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("centre\t(all sites)\tsystem/*.rs\thttps://centre.example.org/jwks.json\tactive")
    assert lines[1].startswith("ehr-a\tsite-a\tsystem/Observation.rs system/Patient.read\tinline JWKS\tactive")
    assert cli("clients", "revoke", "ehr-a", "--db", db_url)[0] == 0
    code, out = cli("clients", "revoke", "ehr-a", "--db", db_url)
    assert code != 0 and "no active client" in out
    assert "revoked 20" in cli("clients", "list", "--db", db_url)[1].splitlines()[1]
    store = SqlStore(db_url)
    try:
        record = store.get_client("ehr-a")
        assert record is not None and record.revoked and record.site == "site-a"
        assert json.loads(record.jwks or "")["keys"][0]["kid"] == "rsa-1"
    finally:
        store.close()


def test_clients_add_refuses_bad_registrations(db_url: str, tmp_path: pathlib.Path) -> None:
    private = tmp_path / "private.jwks.json"
    private.write_text(json.dumps({"keys": [RSA_KEY.as_dict(private=True)]}))
    public = tmp_path / "public.jwks.json"
    public.write_text(json.dumps(public_jwks(RSA_KEY)))
    no_kid = tmp_path / "no-kid.jwks.json"
    no_kid.write_text(json.dumps({"keys": [{k: v for k, v in RSA_KEY.as_dict(private=False).items() if k != "kid"}]}))
    not_json = tmp_path / "x.json"
    not_json.write_text("-----BEGIN PUBLIC KEY-----")
    cases = [
        (["--jwks", str(private), "--scope", "system/*.rs"], "private key material"),
        (["--jwks", str(not_json), "--scope", "system/*.rs"], "not JSON"),
        (["--jwks", str(no_kid), "--scope", "system/*.rs"], "every key needs a kid"),
        (["--jwks", str(public), "--scope", "system/*.rs", "--site", "a b"], "--site"),
        (["--jwks", str(public), "--scope", "patient/Observation.rs"], "no SMART system scope"),
        (["--jwks", str(public), "--scope", "openid"], "no SMART system scope"),
        (["--jwks", str(public), "--scope", "system/Observation.xyz"], "permissions are v1"),
        (["--jwks", str(public), "--scope", "system/Observation.rs?category=lab"], "not supported"),
        (["--jwks", str(public), "--scope", "system/Unicorn.rs"], "Unicorn is not a resource type"),
        (["--jwks", str(public), "--scope", " "], "no scope given"),
        (["--jwks-url", "http://ehr.example.org/jwks.json", "--scope", "system/*.rs"], "https://"),
        (["--scope", "system/*.rs"], "exactly one of"),
        (["--jwks", str(public), "--jwks-url", "https://x.example.org/j", "--scope", "system/*.rs"], "exactly one of"),
    ]
    for args, says in cases:
        code, out = cli("clients", "add", "c1", *args, "--db", db_url)
        assert code != 0 and says in out, (args, out)
    assert cli("clients", "list", "--db", db_url)[1] == ""  # nothing was registered


def test_clients_help_has_examples() -> None:
    code, out = cli("clients", "--help")
    assert code == 0 and "fhir-adapter clients add ehr-site-a --jwks" in out


def test_remember_assertion_refuses_a_replay_and_purges_expired(store: SqlStore) -> None:
    store.add_client(ClientRecord("a", "system/*.rs", "{}"))
    assert store.remember_assertion("a", "j1", 4_000_000_000)
    assert not store.remember_assertion("a", "j1", 4_000_000_000)
    assert store.remember_assertion("b", "j1", 4_000_000_000)  # jtis are per client
    for i in range(200):  # expired long ago: the periodic purge removes them
        store.remember_assertion("a", f"old{i}", 1)
    with store.engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(auth_jti)).scalar_one()
    assert left < 100
