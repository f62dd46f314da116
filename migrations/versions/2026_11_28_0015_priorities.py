"""priorities: 0 (the default) to 9 within a queue, higher first; each priority of a
queue is an RQ list of its own (service.priorities)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 10:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False)
    )
    op.create_check_constraint(op.f("ck_jobs_priority"), "jobs", "priority BETWEEN 0 AND 9")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_priority"), "jobs", type_="check")
    op.drop_column("jobs", "priority")
