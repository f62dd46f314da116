"""analytics events, and an index for retention cleanup

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 15:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINAL = sa.text("status IN ('finished', 'failed', 'canceled')")


def upgrade() -> None:
    op.create_table(
        "analytics_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "properties",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_events")),
        sa.UniqueConstraint("job_id", "seq", name=op.f("uq_analytics_events_job_id_seq")),
    )
    op.create_index(
        "ix_analytics_events_owner_name_occurred",
        "analytics_events",
        ["owner", "name", "occurred_at"],
    )
    op.create_index("ix_jobs_finished", "jobs", ["finished_at"], postgresql_where=FINAL)


def downgrade() -> None:
    op.drop_index("ix_jobs_finished", table_name="jobs", postgresql_where=FINAL)
    op.drop_index("ix_analytics_events_owner_name_occurred", table_name="analytics_events")
    op.drop_table("analytics_events")
