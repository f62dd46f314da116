"""job change notifications (LISTEN/NOTIFY) and completion callbacks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 18:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLBACK_DUE = sa.text(
    "callback_url IS NOT NULL AND status IN ('finished', 'failed', 'canceled')"
    " AND callback_for IS DISTINCT FROM finished_at"
)

# Every change of a job's status or progress is announced on channel `jobs` with the job's
# id as payload. The trigger runs in the changing transaction, so the notice is delivered
# at its commit, and never for a change that rolled back.
NOTIFY = [
    """
    CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('jobs', NEW.id::text);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER jobs_notify AFTER UPDATE ON jobs FOR EACH ROW
        WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.progress IS DISTINCT FROM NEW.progress)
        EXECUTE FUNCTION jobs_notify()
    """,
]


def upgrade() -> None:
    op.add_column("jobs", sa.Column("callback_url", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("callback_for", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_callback_due", "jobs", ["finished_at"], postgresql_where=CALLBACK_DUE)
    for statement in NOTIFY:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_notify ON jobs")
    op.execute("DROP FUNCTION jobs_notify()")
    op.drop_index("ix_jobs_callback_due", table_name="jobs", postgresql_where=CALLBACK_DUE)
    op.drop_column("jobs", "callback_for")
    op.drop_column("jobs", "callback_url")
