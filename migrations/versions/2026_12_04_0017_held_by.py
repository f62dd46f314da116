"""why a held job is held: `held_by` is 'key' (its concurrency key at its limit: its
key's release hands it back) or 'pause' (popped from a paused queue: the resume does),
set exactly when `held` is

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 18:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("held_by", sa.Text(), nullable=True))
    # A keyed job held before now is taken as held for its key: its key's release, which
    # leaves paused queues alone, hands it back once its queue is open and its key has room.
    op.execute(
        "UPDATE jobs SET held_by = CASE WHEN concurrency_key IS NULL THEN 'pause' ELSE 'key' END"
        " WHERE held"
    )
    op.create_check_constraint("held_by", "jobs", "held_by IN ('key', 'pause')")
    op.create_check_constraint("held", "jobs", "held = (held_by IS NOT NULL)")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_held"), "jobs", type_="check")
    op.drop_constraint(op.f("ck_jobs_held_by"), "jobs", type_="check")
    op.drop_column("jobs", "held_by")
