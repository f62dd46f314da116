"""unique jobs: a job's uniqueness key, looked up by owner and age

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 07:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNIQUE = sa.text("unique_key IS NOT NULL")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("unique_key", sa.Text(), nullable=True))
    op.create_index(
        "ix_jobs_unique_key",
        "jobs",
        ["owner", "unique_key", sa.text("created_at DESC")],
        postgresql_where=UNIQUE,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_unique_key", table_name="jobs", postgresql_where=UNIQUE)
    op.drop_column("jobs", "unique_key")
