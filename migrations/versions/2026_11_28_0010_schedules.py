"""schedules: cron schedules kept in the ledger, fired by the reconciler

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 06:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("NOT paused")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("args", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("queue", sa.Text(), nullable=True),
        sa.Column("catch_up", sa.Text(), server_default=sa.text("'latest'"), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "recent_jobs",
            ARRAY(UUID(as_uuid=True)),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "catch_up IN ('latest', 'all', 'none')", name=op.f("ck_schedules_catch_up")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("owner", "name", name=op.f("uq_schedules_owner_name")),
    )
    op.create_index("ix_schedules_due", "schedules", ["next_fire_at"], postgresql_where=DUE)


def downgrade() -> None:
    op.drop_index("ix_schedules_due", table_name="schedules", postgresql_where=DUE)
    op.drop_table("schedules")
