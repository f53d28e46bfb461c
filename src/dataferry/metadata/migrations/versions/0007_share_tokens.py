"""Delta Sharing tokens: ``share_tokens``, one consumer's bearer tokens (hashes only).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "share_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("consumer", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_share_tokens_token_hash")),
    )
    op.create_index(op.f("ix_share_tokens_consumer"), "share_tokens", ["consumer"])


def downgrade() -> None:
    op.drop_index(op.f("ix_share_tokens_consumer"), table_name="share_tokens")
    op.drop_table("share_tokens")
