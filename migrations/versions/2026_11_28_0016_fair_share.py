"""fair share between tenants: a job over its owner's in-flight quota is recorded
`parked` (queued, not handed to Redis) until one of the owner's jobs in that queue ends
(service.fair_share)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28 10:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_FLIGHT = sa.text("status IN ('queued', 'started') AND NOT parked")
PARKED = sa.text("parked")


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("parked", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_index("ix_jobs_in_flight", "jobs", ["owner", "queue"], postgresql_where=IN_FLIGHT)
    op.create_index(
        "ix_jobs_parked", "jobs", ["owner", "queue", "created_at"], postgresql_where=PARKED
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_parked", table_name="jobs", postgresql_where=PARKED)
    op.drop_index("ix_jobs_in_flight", table_name="jobs", postgresql_where=IN_FLIGHT)
    op.drop_column("jobs", "parked")
