"""claim_token: which delivery claimed the running attempt, so a claim whose answer was
lost can find its own claim again

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 19:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("claim_token", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "claim_token")
