"""retries, scheduling, idempotency and the reconciler's indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 14:50:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("backoff_s", sa.Float(), server_default=sa.text("5"), nullable=False)
    )
    op.add_column("jobs", sa.Column("request_hash", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f("ck_jobs_backoff_s"), "jobs", "backoff_s >= 0")
    op.drop_index(
        "ix_jobs_active",
        table_name="jobs",
        postgresql_where=sa.text("status IN ('queued', 'scheduled', 'started')"),
    )
    op.create_index(
        "ix_jobs_lease",
        "jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'started'"),
    )
    op.create_index(
        "ix_jobs_due", "jobs", ["run_at"], postgresql_where=sa.text("status = 'scheduled'")
    )
    op.create_index(
        "ix_jobs_queued", "jobs", ["created_at"], postgresql_where=sa.text("status = 'queued'")
    )


def downgrade() -> None:
    op.drop_index(
        "ix_jobs_queued", table_name="jobs", postgresql_where=sa.text("status = 'queued'")
    )
    op.drop_index(
        "ix_jobs_due", table_name="jobs", postgresql_where=sa.text("status = 'scheduled'")
    )
    op.drop_index(
        "ix_jobs_lease", table_name="jobs", postgresql_where=sa.text("status = 'started'")
    )
    op.create_index(
        "ix_jobs_active",
        "jobs",
        ["status", "updated_at"],
        postgresql_where=sa.text("status IN ('queued', 'scheduled', 'started')"),
    )
    op.drop_constraint(op.f("ck_jobs_backoff_s"), "jobs", type_="check")
    op.drop_column("jobs", "checked_at")
    op.drop_column("jobs", "request_hash")
    op.drop_column("jobs", "backoff_s")
