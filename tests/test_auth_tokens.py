"""Access tokens as the request hook sees them: `TokenService.authenticate`."""
from __future__ import annotations

import pathlib
import stat

import pytest

from adapter.auth.keys import load_or_create
from adapter.auth.tokens import AccessGrant, TokenService, Unauthenticated
from adapter.store.clients import ClientRecord
from adapter.store.sql_store import SqlStore

NOW = 1_900_000_000.0


@pytest.fixture
def tokens(store: SqlStore, tmp_path: pathlib.Path) -> TokenService:
    store.add_client(ClientRecord("ehr", "system/*.rs", '{"keys": []}', site="site-b", policy="p1"))
    return TokenService(load_or_create(tmp_path / "key.json"), store, lifetime=300, client_cache_seconds=5)


def _token(tokens: TokenService, store: SqlStore, now: float = NOW) -> str:
    record = store.get_client("ehr")
    assert record is not None
    return tokens.issue(record, "system/Observation.rs", "https://fhir.example.org/fhir", now)[0]


def test_a_token_grants_its_client_site_scope_and_policy(tokens: TokenService, store: SqlStore) -> None:
    token = _token(tokens, store)
    assert tokens.authenticate(f"Bearer {token}", NOW + 1) == AccessGrant(
        "ehr", "site-b", "system/Observation.rs", int(NOW) + 300, "p1")
    assert tokens.authenticate(f"bearer   {token} ", NOW + 2).client == "ehr"  # the scheme is case-blind


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Bearer a b",
                                    "Bearer not-a-jwt", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJlaHIifQ."])
def test_missing_or_malformed_tokens_are_refused(tokens: TokenService, header: str | None) -> None:
    with pytest.raises(Unauthenticated) as caught:
        tokens.authenticate(header, NOW)
    assert caught.value.reason


def test_expired_token_is_refused_even_when_cached(tokens: TokenService, store: SqlStore) -> None:
    token = _token(tokens, store)
    tokens.authenticate(f"Bearer {token}", NOW + 299)  # now cached
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.authenticate(f"Bearer {token}", NOW + 300)


def test_the_services_clock_issues_and_expires_tokens(store: SqlStore, tmp_path: pathlib.Path) -> None:
    store.add_client(ClientRecord("ehr", "system/*.rs", '{"keys": []}'))
    now = [NOW]
    tokens = TokenService(load_or_create(tmp_path / "key.json"), store, lifetime=300, clock=lambda: now[0])
    record = store.get_client("ehr")
    assert record is not None
    token = tokens.issue(record, "system/*.rs", "x")[0]  # no `now`: the clock's
    assert tokens.authenticate(f"Bearer {token}").expires == int(NOW) + 300
    now[0] = NOW + 299
    assert tokens.authenticate(f"Bearer {token}").client == "ehr"
    now[0] = NOW + 300
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.authenticate(f"Bearer {token}")


def test_token_signed_by_another_servers_key_is_refused(tokens: TokenService, store: SqlStore,
                                                         tmp_path: pathlib.Path) -> None:
    other = TokenService(load_or_create(tmp_path / "other-key.json"), store)
    record = store.get_client("ehr")
    assert record is not None
    foreign = other.issue(record, "system/*.rs", "https://elsewhere.example.org/fhir", NOW)[0]
    assert other.authenticate(f"Bearer {foreign}", NOW).client == "ehr"
    with pytest.raises(Unauthenticated, match="not one this server signed"):
        tokens.authenticate(f"Bearer {foreign}", NOW)


def test_tampered_token_is_refused(tokens: TokenService, store: SqlStore) -> None:
    head, body, signature = _token(tokens, store).split(".")
    with pytest.raises(Unauthenticated):
        tokens.authenticate(f"Bearer {head}.{body}.{signature[:-4]}AAAA", NOW)


def test_revoked_clients_tokens_stop_once_the_status_cache_expires(tokens: TokenService, store: SqlStore) -> None:
    token = _token(tokens, store)
    assert tokens.authenticate(f"Bearer {token}", NOW).client == "ehr"
    store.revoke_client("ehr")
    assert tokens.authenticate(f"Bearer {token}", NOW + 4).client == "ehr"  # within the 5 s TTL
    with pytest.raises(Unauthenticated, match="revoked"):
        tokens.authenticate(f"Bearer {token}", NOW + 5)
    with pytest.raises(Unauthenticated, match="revoked"):  # a token never seen before, too
        tokens.authenticate(f"Bearer {_token(tokens, store, NOW + 1)}", NOW + 6)


def test_verified_tokens_are_cached_and_the_cache_is_bounded(store: SqlStore, tmp_path: pathlib.Path) -> None:
    store.add_client(ClientRecord("ehr", "system/*.rs", '{"keys": []}'))
    tokens = TokenService(load_or_create(tmp_path / "key.json"), store, cache_size=10)
    record = store.get_client("ehr")
    assert record is not None
    issued = [tokens.issue(record, "system/*.rs", "x", NOW + i)[0] for i in range(25)]
    for token in issued:
        tokens.authenticate(f"Bearer {token}", NOW + 30)
    assert len(tokens._verified) <= 10
    assert issued[-1] in tokens._verified
    # a cache hit checks no signature: the cached grant is what is returned
    assert tokens.authenticate(f"Bearer {issued[-1]}", NOW + 31) is tokens._verified[issued[-1]]


def test_server_key_is_made_once_private(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "var" / "auth-key.json"
    first = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(path).kid == first.kid  # read back, not replaced
    public = first.public_jwks()["keys"][0]
    assert public["kid"] == first.kid and "d" not in public
    assert "d" in path.read_text() and first.key.as_dict(private=True)["d"] not in repr(first)
