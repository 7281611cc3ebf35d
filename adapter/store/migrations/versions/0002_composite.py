"""Composite search parameters: idx_composite, filled for the resources already stored.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from adapter.store.schema import key_text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.create_table(
        "idx_composite",
        sa.Column("res_type", key_text(64), nullable=False),
        sa.Column("res_id", key_text(64), nullable=False),
        sa.Column("param", key_text(64), nullable=False),
        sa.Column("system", key_text()), sa.Column("code", key_text()),
        sa.Column("value_system", key_text()), sa.Column("value_code", key_text()),
        sa.Column("value_number", sa.Float), sa.Column("value_unit", sa.Text),
        sa.Column("value_low", key_text(26)), sa.Column("value_high", key_text(26)),
    )
    op.create_index("ix_idx_composite_lookup", "idx_composite", ["res_type", "param", "code", "system", "res_id"])
    op.create_index("ix_idx_composite_owner", "idx_composite", ["res_type", "res_id", "param"])
    _backfill()


def _backfill() -> None:
    """Resources stored before this revision get their composite rows now, as a write would
    have made them, so that searches see them without a reload."""
    from adapter.fhir.definitions import SERVED_TYPES, search_params
    from adapter.fhir.extract import extract
    conn = op.get_bind()
    resources = sa.table("resources", sa.column("res_type"), sa.column("res_id"),
                         sa.column("deleted"), sa.column("data"))
    table = sa.table("idx_composite", *(sa.column(c) for c in (
        "res_type", "res_id", "param", "system", "code", "value_system", "value_code",
        "value_number", "value_unit", "value_low", "value_high")))
    for rtype in SERVED_TYPES:
        if not any(p.type == "composite" for p in search_params(rtype).values()):
            continue
        last = ""
        while True:
            rows = conn.execute(sa.select(resources.c.res_id, resources.c.data).where(
                resources.c.res_type == rtype, resources.c.deleted == sa.false(), resources.c.res_id > last)
                .order_by(resources.c.res_id).limit(_BATCH)).all()
            if not rows:
                break
            found = [dict(zip(table.c.keys(), (rtype, rid, *row), strict=True))
                     for rid, data in rows for row in extract(json.loads(data)).composite]  # type: ignore[arg-type]
            if found:
                conn.execute(table.insert(), found)
            last = rows[-1].res_id


def downgrade() -> None:
    op.drop_table("idx_composite")
