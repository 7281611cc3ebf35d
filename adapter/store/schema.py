"""Tables of the SQL stores (SQLAlchemy Core), the same for SQLite and PostgreSQL.

`resources` holds the current version of each resource (PostgreSQL adds a generated JSONB copy,
`content`, see the migrations), `resource_history` every version, ordered by a store-wide
sequence; one index table per search-parameter type holds the rows extracted from the current
version. The migrations in adapter/store/migrations/ create exactly this; a test checks that
they never drift apart.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger, Boolean, Column, Float, Index, Integer, LargeBinary, MetaData,
    PrimaryKeyConstraint, String, Table, Text, UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

__all__ = ["metadata", "resources", "history", "INDEX_TABLES", "INDEX_COLUMNS", "key_text",
           "auth_clients", "auth_jti", "page_sessions"]

metadata = MetaData()


def key_text(length: int | None = None) -> TypeEngine[str]:
    """Text compared and sorted byte by byte: ids, codes, fixed-width timestamps.

    PostgreSQL gets the "C" collation, so that ordering, keyset paging and LIKE prefixes use
    the indexes and agree with SQLite whatever the database's default collation.
    """
    base = String(length) if length else Text()
    return base.with_variant(String(length, collation="C") if length else Text(collation="C"),
                             "postgresql")


def _key() -> list[Column]:  # type: ignore[type-arg]
    return [Column("res_type", key_text(64), nullable=False),
            Column("res_id", key_text(64), nullable=False)]


resources = Table(
    "resources", metadata,
    *_key(),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", key_text(32), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("data", LargeBinary),
    PrimaryKeyConstraint("res_type", "res_id", name="pk_resources"),
)
Index("ix_resources_type_updated", resources.c.res_type, resources.c.last_updated)

history = Table(
    "resource_history", metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    *_key(),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", key_text(32), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("method", String(8), nullable=False),
    Column("data", LargeBinary),
    UniqueConstraint("res_type", "res_id", "version_id", name="uq_history_version"),
)
Index("ix_history_type_seq", history.c.res_type, history.c.seq)


def _index_table(name: str, *columns: Column, lookup: tuple[str, ...]) -> Table:  # type: ignore[type-arg]
    table = Table(name, metadata, *_key(), Column("param", key_text(64), nullable=False), *columns)
    # res_id last: an EXISTS probe for one resource is a single seek on the whole key.
    Index(f"ix_{name}_lookup", table.c.res_type, table.c.param, *(table.c[c] for c in lookup),
          table.c.res_id)
    Index(f"ix_{name}_owner", table.c.res_type, table.c.res_id, table.c.param)
    return table


INDEX_TABLES: dict[str, Table] = {
    "token": _index_table("idx_token", Column("system", key_text()), Column("code", key_text()),
                          Column("text", Text), lookup=("code", "system")),
    "string": _index_table("idx_string", Column("value", key_text()), lookup=("value",)),
    "date": _index_table("idx_date", Column("low", key_text(26)), Column("high", key_text(26)),
                         lookup=("low", "high")),
    "reference": _index_table("idx_reference", Column("target_type", key_text(64)),
                              Column("target_id", key_text(64)), Column("url", key_text()),
                              lookup=("target_id", "target_type")),
    "quantity": _index_table("idx_quantity", Column("value", Float), Column("system", key_text()),
                             Column("code", key_text()), Column("unit", Text), lookup=("value",)),
    "uri": _index_table("idx_uri", Column("value", key_text()), lookup=("value",)),
    "number": _index_table("idx_number", Column("value", Float), lookup=("value",)),
    # Composite parameters (code-value-quantity, ...): the code and the value of one instance in
    # one row, so that a search pairs them as the resource did.
    "composite": _index_table("idx_composite", Column("system", key_text()), Column("code", key_text()),
                              Column("value_system", key_text()), Column("value_code", key_text()),
                              Column("value_number", Float), Column("value_unit", Text),
                              Column("value_low", key_text(26)), Column("value_high", key_text(26)),
                              lookup=("code", "system")),
}
# The column names of each index table in the order extract.IndexRows tuples carry them.
INDEX_COLUMNS: dict[str, tuple[str, ...]] = {
    "token": ("param", "system", "code", "text"),
    "string": ("param", "value"),
    "date": ("param", "low", "high"),
    "reference": ("param", "target_type", "target_id", "url"),
    "quantity": ("param", "value", "system", "code", "unit"),
    "uri": ("param", "value"),
    "number": ("param", "value"),
    "composite": ("param", "system", "code", "value_system", "value_code", "value_number",
                  "value_unit", "value_low", "value_high"),
}

# SMART Backend Services (adapter/auth): the registered clients, and the client assertions'
# `jti`s seen until they expire (the replay cache; a primary key, so it holds across workers).
auth_clients = Table(
    "auth_clients", metadata,
    Column("name", key_text(128), primary_key=True),
    Column("jwks", Text),  # a JSON Web Key Set of public keys, or null when jwks_url is set
    Column("jwks_url", Text),
    Column("scope", Text, nullable=False),
    Column("site", key_text(64)),  # null: the coordinating centre, which sees every site
    Column("policy", Text),  # kept for a later issue; copied into the client's tokens
    Column("created", key_text(32), nullable=False),
    Column("revoked_at", key_text(32)),
)

auth_jti = Table(
    "auth_jti", metadata,
    Column("client", key_text(128), nullable=False),
    Column("jti", key_text(255), nullable=False),
    Column("expires", BigInteger, nullable=False),  # seconds since the epoch
    PrimaryKeyConstraint("client", "jti", name="pk_auth_jti"),
)
Index("ix_auth_jti_expires", auth_jti.c.expires)

# The pages' server-side sessions (adapter/store/page_sessions.py): a person signed in through
# OpenID Connect, and the sign-ins under way (their state, nonce and PKCE verifier). The key is
# a hash of the cookie's value, so the table alone cannot be used to take a session over.
page_sessions = Table(
    "page_sessions", metadata,
    Column("key", key_text(64), primary_key=True),  # sha256 hex of the cookie's random value
    Column("kind", key_text(16), nullable=False),  # "session" or "sign-in"
    Column("data", Text, nullable=False),  # JSON
    Column("expires", BigInteger, nullable=False),  # seconds since the epoch
)
Index("ix_page_sessions_expires", page_sessions.c.expires)
