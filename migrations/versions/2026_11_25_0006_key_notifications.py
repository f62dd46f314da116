"""notify API processes when a key is changed, deleted or truncated (key caches empty)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 18:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY = [
    """
    CREATE FUNCTION api_keys_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('api_keys', TG_OP);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER api_keys_notify AFTER UPDATE OR DELETE ON api_keys FOR EACH ROW
        EXECUTE FUNCTION api_keys_notify()
    """,
    """
    CREATE TRIGGER api_keys_notify_truncate AFTER TRUNCATE ON api_keys FOR EACH STATEMENT
        EXECUTE FUNCTION api_keys_notify()
    """,
]


def upgrade() -> None:
    for statement in NOTIFY:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER api_keys_notify_truncate ON api_keys")
    op.execute("DROP TRIGGER api_keys_notify ON api_keys")
    op.execute("DROP FUNCTION api_keys_notify()")
