"""queue_states: queues an operator paused (workers leave their jobs queued)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 07:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_states",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("changed_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_queue_states")),
    )


def downgrade() -> None:
    op.drop_table("queue_states")
