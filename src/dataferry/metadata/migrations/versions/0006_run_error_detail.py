"""A failed run's detail apart from its public summary: ``run_errors`` and
``run_logs.detail``.

A run's ``error`` and log ``message`` are what every logged-in user, the event stream and
webhooks see, so they must not hold row values; the full error text (which may quote
rows) and the failed checks' example rows move to ``run_errors`` and ``run_logs.detail``,
shown only to those who may read the job's rows.

Failures recorded before this revision were not told apart: their texts move to the
detail (``run_errors.detail``, ``run_logs.detail``), and what everyone reads becomes a
summary that says so; the ``error`` of their ``run.failed`` events in the outbox too.
Skipped runs keep their reason (it names a job, never a row).

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


LEGACY = ("failed; its error was recorded before dataferry kept row values out of run "
          "errors: the detail is shown to the owning team and admins")
RUN_FAILED = "io.dataferry.run.failed"

runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("job_id", sa.String),
                sa.column("status", sa.String), sa.column("error", sa.Text))
run_logs = sa.table("run_logs", sa.column("id", sa.Integer), sa.column("level", sa.String),
                    sa.column("message", sa.Text), sa.column("detail", sa.Text))
run_errors = sa.table("run_errors", sa.column("run_id", sa.Integer),
                      sa.column("detail", sa.Text), sa.column("checks", sa.JSON))
events = sa.table("events", sa.column("seq", sa.Integer), sa.column("type", sa.String),
                  sa.column("data", sa.JSON))


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
    _keep_old_failures_apart()


def _keep_old_failures_apart() -> None:
    """Move the texts of failures recorded before this revision to their detail."""
    bind = op.get_bind()
    failed = bind.execute(sa.select(runs.c.id, runs.c.job_id, runs.c.error).where(
        runs.c.status == "failed", runs.c.error.is_not(None))).all()
    for run_id, job_id, error in failed:
        bind.execute(run_errors.insert().values(run_id=run_id, detail=error, checks=None))
        bind.execute(runs.update().where(runs.c.id == run_id)
                     .values(error=f"{job_id}: {LEGACY}"))
    bind.execute(run_logs.update().where(run_logs.c.level == "error")
                 .values(detail=run_logs.c.message, message=f"error: {LEGACY}"))
    rows = bind.execute(sa.select(events.c.seq, events.c.data)
                        .where(events.c.type == RUN_FAILED)).all()
    for seq, data in rows:
        if isinstance(data, dict) and data.get("error") and data.get("status") == "failed":
            data = {**data, "error": f"{data.get('job')}: {LEGACY}"}
            bind.execute(events.update().where(events.c.seq == seq).values(data=data))


def downgrade() -> None:
    # The previous schema had one text: the full one (the events stay as they are).
    bind = op.get_bind()
    for run_id, detail in bind.execute(sa.select(run_errors.c.run_id, run_errors.c.detail)
                                       .where(run_errors.c.detail.is_not(None))).all():
        bind.execute(runs.update().where(runs.c.id == run_id).values(error=detail))
    bind.execute(run_logs.update().where(run_logs.c.detail.is_not(None))
                 .values(message=run_logs.c.detail))
    with op.batch_alter_table("run_logs") as batch:
        batch.drop_column("detail")
    op.drop_table("run_errors")
