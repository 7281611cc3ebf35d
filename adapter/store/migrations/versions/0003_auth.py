"""SMART Backend Services: registered clients and the client-assertion replay cache.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapter.store.schema import key_text

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_clients",
        sa.Column("name", key_text(128), primary_key=True),
        sa.Column("jwks", sa.Text),
        sa.Column("jwks_url", sa.Text),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("site", key_text(64)),
        sa.Column("policy", sa.Text),
        sa.Column("created", key_text(32), nullable=False),
        sa.Column("revoked_at", key_text(32)),
    )
    op.create_table(
        "auth_jti",
        sa.Column("client", key_text(128), nullable=False),
        sa.Column("jti", key_text(255), nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("client", "jti", name="pk_auth_jti"),
    )
    op.create_index("ix_auth_jti_expires", "auth_jti", ["expires"])


def downgrade() -> None:
    op.drop_table("auth_jti")
    op.drop_table("auth_clients")
