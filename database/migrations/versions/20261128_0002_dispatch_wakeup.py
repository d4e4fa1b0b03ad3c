"""wake the dispatcher by NOTIFY when a job may be dispatched

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 16:20:00

A job that becomes pending (submitted, or returned to the queue), or that leaves an active status (a
slot frees) while other jobs wait, notifies `cc_dispatch` (database.wakeups.DISPATCH_CHANNEL) on commit. The dispatcher listens,
so neither ingest nor inference has to nudge it over HTTP. The WHEN clauses are evaluated without
calling the function, so other status changes cost nothing; PostgreSQL folds identical notifications
of one transaction into one.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "('assigned', 'in_progress', 'cancelling')"

# A freed slot only matters while jobs wait: with an empty queue the pass it would start finds nothing
# (one index probe on ix_jobs_pending_by_user here saves that pass's three statements).
WAKE_FUNCTION = """
CREATE FUNCTION jobs_wake_dispatcher() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' OR EXISTS (SELECT 1 FROM jobs WHERE status = 'pending') THEN
        PERFORM pg_notify('cc_dispatch', '');
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(WAKE_FUNCTION)
    op.execute(
        "CREATE TRIGGER jobs_wake_dispatcher_on_insert AFTER INSERT ON jobs FOR EACH ROW "
        "WHEN (NEW.status = 'pending') EXECUTE FUNCTION jobs_wake_dispatcher()"
    )
    op.execute(
        "CREATE TRIGGER jobs_wake_dispatcher_on_update AFTER UPDATE OF status ON jobs FOR EACH ROW "
        f"WHEN (NEW.status IS DISTINCT FROM OLD.status AND (NEW.status = 'pending' "
        f"OR (OLD.status IN {ACTIVE} AND NEW.status NOT IN {ACTIVE}))) "
        "EXECUTE FUNCTION jobs_wake_dispatcher()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS jobs_wake_dispatcher_on_update ON jobs")
    op.execute("DROP TRIGGER IF EXISTS jobs_wake_dispatcher_on_insert ON jobs")
    op.execute("DROP FUNCTION IF EXISTS jobs_wake_dispatcher()")
