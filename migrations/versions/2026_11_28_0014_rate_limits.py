"""shared rate limits: one row per named limiter (its spacing between starts, when the next
start may happen, when a deferred job may come back); a job's `throttled` counts the times
it was told to slow down and rescheduled without spending an attempt

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 09:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("per_s", sa.Float(), nullable=True),
        sa.Column("declared", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "next_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "defer_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("backed_off_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("throttled", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("changed_by", sa.Text(), nullable=True),
        sa.CheckConstraint("per_s > 0", name=op.f("ck_rate_limits_per_s")),
    )
    op.add_column("jobs", sa.Column("throttled", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("jobs", "throttled")
    op.drop_table("rate_limits")
