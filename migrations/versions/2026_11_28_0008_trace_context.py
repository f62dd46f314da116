"""trace_context: the W3C traceparent of the request that submitted the job, so the
worker's spans continue that trace

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 04:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("trace_context", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "trace_context")
