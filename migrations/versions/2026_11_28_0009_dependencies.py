"""dependencies: a job may wait for other jobs (status `waiting`), released by the ledger
itself when its last parent ends

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 06:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'queued', 'scheduled', 'started', 'finished', 'failed', 'canceled'"
HAS_PARENTS = sa.text("depends_on IS NOT NULL")

# When a job that has children ends (or is retried, and so is no longer final), each of its
# waiting children is locked, in id order, and its parents counted again: all final, the
# child is released (`queued`, or `scheduled` if its start time is still ahead); one
# failed or canceled and the child's policy is `cancel`, it is canceled with error
# `dependency_failed`. The count is a new statement after the lock, so of two parents
# ending at once the second sees the first's commit (architecture.md, "Dependencies").
# It runs in the transaction that ended the parent: the release commits with the outcome.
RELEASE = [
    """
    CREATE FUNCTION jobs_release_children() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        v_child record;
        v_pending int;
        v_failed record;
        v_error jsonb;
    BEGIN
        FOR v_child IN
            SELECT id, depends_on, on_parent_failure, run_at, attempt FROM jobs
            WHERE depends_on @> ARRAY[NEW.id] AND status = 'waiting'
            ORDER BY id FOR UPDATE
        LOOP
            SELECT count(*) FILTER (WHERE p.status NOT IN ('finished', 'failed', 'canceled'))
            INTO v_pending FROM jobs p WHERE p.id = ANY(v_child.depends_on);
            SELECT p.id, p.status INTO v_failed FROM jobs p
            WHERE p.id = ANY(v_child.depends_on) AND p.status IN ('failed', 'canceled')
            ORDER BY p.finished_at LIMIT 1;
            IF v_failed.id IS NOT NULL AND v_child.on_parent_failure = 'cancel' THEN
                v_error := jsonb_build_object(
                    'type', 'dependency_failed',
                    'message', format('parent job %s ended %s', v_failed.id, v_failed.status),
                    'traceback', NULL);
                UPDATE jobs SET status = 'canceled', pending_parents = v_pending, error = v_error,
                                finished_at = now(), updated_at = now()
                WHERE id = v_child.id;
                INSERT INTO job_events (job_id, status, attempt, detail)
                VALUES (v_child.id, 'canceled', v_child.attempt, jsonb_build_object(
                    'by', 'dependency', 'parent', NEW.id::text,
                    'error', v_error - 'traceback'));
            ELSIF v_pending = 0 THEN
                UPDATE jobs SET pending_parents = 0, updated_at = now(), status =
                    CASE WHEN run_at > now() THEN 'scheduled' ELSE 'queued' END
                WHERE id = v_child.id;
                INSERT INTO job_events (job_id, status, attempt, detail)
                SELECT id, status, attempt, jsonb_build_object(
                    'by', 'dependency', 'parent', NEW.id::text)
                FROM jobs WHERE id = v_child.id;
            ELSE
                UPDATE jobs SET pending_parents = v_pending
                WHERE id = v_child.id AND pending_parents <> v_pending;
            END IF;
        END LOOP;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER jobs_release_children AFTER UPDATE OF status ON jobs FOR EACH ROW
        WHEN (NEW.has_children AND (OLD.status IN ('finished', 'failed', 'canceled'))
              IS DISTINCT FROM (NEW.status IN ('finished', 'failed', 'canceled')))
        EXECUTE FUNCTION jobs_release_children()
    """,
]


def _statuses(*extra: str) -> str:
    return f"status IN ({STATUSES}{''.join(f', {s!r}' for s in extra)})"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_status"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_status"), "jobs", _statuses("waiting"))
    op.add_column("jobs", sa.Column("depends_on", ARRAY(UUID(as_uuid=True)), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("pending_parents", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("jobs", sa.Column("on_parent_failure", sa.Text(), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("has_children", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "ix_jobs_depends_on",
        "jobs",
        ["depends_on"],
        postgresql_using="gin",
        postgresql_where=HAS_PARENTS,
    )
    for statement in RELEASE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_release_children ON jobs")
    op.execute("DROP FUNCTION jobs_release_children()")
    op.drop_index("ix_jobs_depends_on", table_name="jobs", postgresql_where=HAS_PARENTS)
    op.execute("UPDATE jobs SET status = 'canceled', finished_at = now() WHERE status = 'waiting'")
    for column in ("has_children", "on_parent_failure", "pending_parents", "depends_on"):
        op.drop_column("jobs", column)
    op.drop_constraint(op.f("ck_jobs_status"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_status"), "jobs", _statuses())
