"""The first schema: current resources, history, search index tables.

On PostgreSQL `resources.content` is a generated JSONB copy of the served bytes, for queries
in SQL; the bytes stay the source of truth and are what the gateway serves.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapter.store.schema import key_text

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

INDEXES: dict[str, tuple[list[sa.Column], list[str]]] = {  # type: ignore[type-arg]
    # name: (extra columns, lookup columns)
    "idx_token": ([sa.Column("system", key_text()), sa.Column("code", key_text()),
                   sa.Column("text", sa.Text)], ["code", "system"]),
    "idx_string": ([sa.Column("value", key_text())], ["value"]),
    "idx_date": ([sa.Column("low", key_text(26)), sa.Column("high", key_text(26))], ["low", "high"]),
    "idx_reference": ([sa.Column("target_type", key_text(64)), sa.Column("target_id", key_text(64)),
                       sa.Column("url", key_text())], ["target_id", "target_type"]),
    "idx_quantity": ([sa.Column("value", sa.Float), sa.Column("system", key_text()),
                      sa.Column("code", key_text()), sa.Column("unit", sa.Text)], ["value"]),
    "idx_uri": ([sa.Column("value", key_text())], ["value"]),
    "idx_number": ([sa.Column("value", sa.Float)], ["value"]),
}


def _key() -> list[sa.Column]:
    return [sa.Column("res_type", key_text(64), nullable=False),
            sa.Column("res_id", key_text(64), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "resources", *_key(),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", key_text(32), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("data", sa.LargeBinary),
        sa.PrimaryKeyConstraint("res_type", "res_id", name="pk_resources"),
    )
    op.create_index("ix_resources_type_updated", "resources", ["res_type", "last_updated"])
    op.create_table(
        "resource_history",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        *_key(),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", key_text(32), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("data", sa.LargeBinary),
        sa.UniqueConstraint("res_type", "res_id", "version_id", name="uq_history_version"),
    )
    op.create_index("ix_history_type_seq", "resource_history", ["res_type", "seq"])
    for name, (columns, lookup) in INDEXES.items():
        op.create_table(name, *_key(), sa.Column("param", key_text(64), nullable=False), *columns)
        op.create_index(f"ix_{name}_lookup", name, ["res_type", "param", *lookup, "res_id"])
        op.create_index(f"ix_{name}_owner", name, ["res_type", "res_id", "param"])
    if op.get_bind().dialect.name == "postgresql":
        # convert_from is only STABLE; our bytes are always UTF-8, so this wrapper is immutable
        # and may feed a generated column.
        op.execute("CREATE OR REPLACE FUNCTION fhir_json(bytea) RETURNS jsonb LANGUAGE sql "
                   "IMMUTABLE PARALLEL SAFE AS $$ SELECT convert_from($1, 'UTF8')::jsonb $$")
        op.execute("ALTER TABLE resources ADD COLUMN content jsonb "
                   "GENERATED ALWAYS AS (fhir_json(data)) STORED")


def downgrade() -> None:
    for name in reversed(list(INDEXES)):
        op.drop_table(name)
    op.drop_table("resource_history")
    op.drop_table("resources")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS fhir_json(bytea)")
