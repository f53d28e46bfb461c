"""A failed run's detail apart from its public summary: ``run_errors`` and
``run_logs.detail``.

A run's ``error`` and log ``message`` are what every logged-in user, the event stream and
webhooks see, so they must not hold row values; the full error text (which may quote
rows) and the failed checks' example rows move to ``run_errors`` and ``run_logs.detail``,
shown only to those who may read the job's rows. Rows recorded before this revision
keep their texts: ``ferry runs`` and the API show them as they were.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "run_errors",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("checks", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_errors_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_errors")),
    )
    with op.batch_alter_table("run_logs") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_logs") as batch:
        batch.drop_column("detail")
    op.drop_table("run_errors")
