"""The pages' server-side sessions (OpenID Connect sign-in, issue 29).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapter.store.schema import key_text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "page_sessions",
        sa.Column("key", key_text(64), primary_key=True),
        sa.Column("kind", key_text(16), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_page_sessions_expires", "page_sessions", ["expires"])


def downgrade() -> None:
    op.drop_table("page_sessions")
