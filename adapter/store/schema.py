"""Tables of the SQL stores (SQLAlchemy Core), the same for SQLite and PostgreSQL.

`resources` holds the current version of each resource, `resource_history` every version
(with a store-wide sequence that orders history); one index table per search-parameter type
holds the rows extracted from the current version.
"""
from __future__ import annotations

from sqlalchemy import (
    Boolean, Column, Float, Index, Integer, LargeBinary, MetaData, PrimaryKeyConstraint, String,
    Table, Text,
    UniqueConstraint,
)

__all__ = ["metadata", "resources", "history", "INDEX_TABLES", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
metadata = MetaData()


def _key() -> list[Column]:  # type: ignore[type-arg]
    return [Column("res_type", String(64), nullable=False),
            Column("res_id", String(64), nullable=False)]


resources = Table(
    "resources", metadata,
    *_key(),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(32), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("data", LargeBinary),
    PrimaryKeyConstraint("res_type", "res_id", name="pk_resources"),
)
Index("ix_resources_type_updated", resources.c.res_type, resources.c.last_updated)

history = Table(
    "resource_history", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    *_key(),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(32), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("method", String(8), nullable=False),
    Column("data", LargeBinary),
    UniqueConstraint("res_type", "res_id", "version_id", name="uq_history_version"),
)
Index("ix_history_type_seq", history.c.res_type, history.c.seq)


def _index_table(name: str, *columns: Column, lookup: tuple[str, ...]) -> Table:  # type: ignore[type-arg]
    table = Table(name, metadata, *_key(), Column("param", String(64), nullable=False), *columns)
    # res_id last: an EXISTS probe for one resource is a single seek on the whole key.
    Index(f"ix_{name}_lookup", table.c.res_type, table.c.param, *(table.c[c] for c in lookup),
          table.c.res_id)
    Index(f"ix_{name}_owner", table.c.res_type, table.c.res_id, table.c.param)
    return table


INDEX_TABLES: dict[str, Table] = {
    "token": _index_table("idx_token", Column("system", Text), Column("code", Text),
                          Column("text", Text), lookup=("code", "system")),
    "string": _index_table("idx_string", Column("value", Text), lookup=("value",)),
    "date": _index_table("idx_date", Column("low", String(26)), Column("high", String(26)),
                         lookup=("low", "high")),
    "reference": _index_table("idx_reference", Column("target_type", String(64)),
                              Column("target_id", String(64)), Column("url", Text),
                              lookup=("target_id", "target_type")),
    "quantity": _index_table("idx_quantity", Column("value", Float), Column("system", Text),
                             Column("code", Text), Column("unit", Text), lookup=("value",)),
    "uri": _index_table("idx_uri", Column("value", Text), lookup=("value",)),
    "number": _index_table("idx_number", Column("value", Float), lookup=("value",)),
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
}
