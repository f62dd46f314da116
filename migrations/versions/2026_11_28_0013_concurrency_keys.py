"""concurrency keys: at most `max_concurrency` running jobs of one key; a job over the
limit is held (not in Redis) until one of them ends. An event's time is when it was
written (a claim may wait for its key's lock inside its transaction)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 08:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'started' AND concurrency_key IS NOT NULL")
HELD = sa.text("held")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("concurrency_key", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("max_concurrency", sa.Integer(), nullable=True))
    op.add_column(
        "jobs", sa.Column("held", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_index("ix_jobs_running_key", "jobs", ["concurrency_key"], postgresql_where=RUNNING)
    op.create_index(
        "ix_jobs_held", "jobs", ["concurrency_key", "created_at"], postgresql_where=HELD
    )
    op.alter_column("job_events", "at", server_default=sa.text("clock_timestamp()"))


def downgrade() -> None:
    op.alter_column("job_events", "at", server_default=sa.func.now())
    op.drop_index("ix_jobs_held", table_name="jobs", postgresql_where=HELD)
    op.drop_index("ix_jobs_running_key", table_name="jobs", postgresql_where=RUNNING)
    for column in ("held", "max_concurrency", "concurrency_key"):
        op.drop_column("jobs", column)
