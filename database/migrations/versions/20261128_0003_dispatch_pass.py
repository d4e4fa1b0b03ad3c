"""a scheduling pass in one statement: cc_dispatch_pass() and cc_claim_jobs()

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 18:00:00

A pass used to be five round trips (BEGIN, lock the free instances, read their free slots, claim, COMMIT)
on the path of every job from submit to start. `cc_dispatch_pass()` runs the same statements inside
the database, in the implicit transaction of the one statement that calls it. PL/pgSQL functions are
VOLATILE: each statement in them takes a fresh snapshot, as the statements of a READ COMMITTED
transaction do, so the free slots are still read after the instance locks are taken (they see every
claim the previous lock holder committed), and the locks are held until that statement commits.

The claim itself (`cc_claim_jobs()`, the former `claim_jobs` statement of database/sql/queue.sql) lives
here now, its one home: change it with a migration that replaces the function. Its plan is cached per
connection, as a prepared statement's was.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "('assigned', 'cancelling', 'in_progress')"

# Claim up to cardinality(p_slots) pending jobs runnable on p_catalogue and assign the k-th to slot k.
# Order: priority first; then round-robin over users (each user's 1st job, then each user's 2nd, ...;
# users served longest ago first); never past a user's limit of active jobs (max_concurrent_jobs,
# else p_default_limit). User rows are locked (SKIP LOCKED) so concurrent dispatchers serve disjoint
# users and cannot overshoot a limit; job rows are locked and re-checked (status = 'pending' at the
# locking level) so no job is handed out twice.
# Cost is bounded by the batch, not the queue: one index probe per user with pending work (skip scan
# over ix_jobs_pending_by_user), then only the first cardinality(p_slots) users in serving order are
# locked and read, each at most `depth` jobs deep. A user cut off at its depth contributes a sentinel
# (its next job); nothing at or after the first sentinel in serving order is claimed, so the result
# is always an exact prefix of the full order and may hold fewer jobs than slots: claim again.
CLAIM_JOBS = """
CREATE FUNCTION cc_claim_jobs(
    p_catalogue text, p_slots uuid[], p_default_limit integer, p_lease_seconds double precision,
    p_execution_timeout double precision
) RETURNS TABLE (
    id uuid, user_id uuid, instance_id uuid, attempts integer, priority integer,
    created_at timestamptz, assigned_at timestamptz
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH RECURSIVE heads(user_id, priority) AS (
        -- Each user with a pending job runnable here, with that user's first such job's priority.
        (SELECT user_id, priority FROM jobs
         WHERE status = 'pending' AND p_catalogue = ANY(runnable_on)
         ORDER BY user_id, priority DESC, number, created_at
         LIMIT 1)
        UNION ALL
        SELECT n.user_id, n.priority
        FROM heads h
        CROSS JOIN LATERAL (
            SELECT j.user_id, j.priority FROM jobs j
            WHERE j.status = 'pending' AND j.user_id > h.user_id
              AND p_catalogue = ANY(j.runnable_on)
            ORDER BY j.user_id, j.priority DESC, j.number, j.created_at
            LIMIT 1
        ) n
    ),
    first_served AS (
        -- A user whose first job is not among the first N in serving order gets nothing from N slots.
        SELECT h.user_id, h.priority
        FROM heads h
        JOIN users u ON u.id = h.user_id
        WHERE u.active_jobs < coalesce(u.max_concurrent_jobs, p_default_limit)
        ORDER BY h.priority DESC, u.last_dispatched_at NULLS FIRST, h.user_id
        LIMIT cardinality(p_slots)
    ),
    eligible AS (
        -- Locking re-reads the row: free is computed from the latest committed active_jobs.
        -- NO KEY UPDATE, the lock the UPDATEs below take anyway: it excludes other claims and the
        -- active_jobs trigger as FOR UPDATE would, but not the KEY SHARE lock that inserting a job takes
        -- on its user (the foreign key), so a user submitting right now is neither skipped here nor
        -- made to wait for this claim.
        SELECT u.id AS user_id, u.last_dispatched_at, f.priority AS head_priority,
               coalesce(u.max_concurrent_jobs, p_default_limit) - u.active_jobs AS free
        FROM users u
        JOIN first_served f ON f.user_id = u.id
        WHERE u.active_jobs < coalesce(u.max_concurrent_jobs, p_default_limit)
        FOR NO KEY UPDATE OF u SKIP LOCKED
    ),
    sized AS (
        -- Depth: enough to fill the batch if every user at the same head priority takes an equal share.
        SELECT user_id, last_dispatched_at, free,
               (cardinality(p_slots) + count(*) OVER (PARTITION BY head_priority) - 1)
                 / count(*) OVER (PARTITION BY head_priority) AS depth
        FROM eligible
    ),
    candidates AS (
        SELECT c.id, c.priority, c.rank, c.rank > s.depth AS sentinel, s.user_id, s.last_dispatched_at
        FROM sized s
        CROSS JOIN LATERAL (
            SELECT p.id, p.priority,
                   row_number() OVER (ORDER BY p.priority DESC, p.number, p.created_at) AS rank
            FROM (
                SELECT id, priority, number, created_at
                FROM jobs
                WHERE user_id = s.user_id AND status = 'pending'
                  AND p_catalogue = ANY(runnable_on)
                ORDER BY priority DESC, number, created_at
                -- Past the user's free capacity nothing is claimable, so no sentinel is needed there.
                LIMIT CASE WHEN s.free <= s.depth THEN s.free ELSE s.depth + 1 END
            ) p
        ) c
    ),
    ranked AS (
        SELECT id, bool_or(sentinel) OVER w AS blocked, row_number() OVER w AS pos
        FROM candidates
        WINDOW w AS (ORDER BY priority DESC, rank, last_dispatched_at NULLS FIRST, user_id
                     ROWS UNBOUNDED PRECEDING)
    ),
    picked AS (
        -- The LIMIT also tells the planner how few rows follow (index lookups, not a scan of jobs).
        SELECT id, pos FROM ranked
        WHERE NOT blocked
        ORDER BY pos
        LIMIT cardinality(p_slots)
    ),
    chosen AS (
        SELECT j.id, j.user_id, p.pos
        FROM picked p
        JOIN jobs j ON j.id = p.id
        WHERE j.status = 'pending'
        FOR NO KEY UPDATE OF j SKIP LOCKED  -- the status UPDATE's own lock (see eligible)
    ),
    numbered AS (
        SELECT id, user_id, row_number() OVER (ORDER BY pos) AS slot FROM chosen
    ),
    served AS (
        -- Later in this batch = later in the rotation; microseconds keep the batch order.
        UPDATE users u
        SET last_dispatched_at = now() + make_interval(secs => s.first_slot / 1000000.0)
        FROM (SELECT user_id, min(slot) AS first_slot FROM numbered GROUP BY user_id) s
        WHERE u.id = s.user_id
    )
    UPDATE jobs j
    SET status = 'assigned',
        instance_id = (p_slots)[n.slot],
        attempts = j.attempts + 1,
        assigned_at = now(),
        updated_at = now(),
        lease_expires_at = now() + make_interval(secs => p_lease_seconds),
        execution_deadline_at = now() + make_interval(secs => p_execution_timeout)
    FROM numbered n
    WHERE j.id = n.id AND j.status = 'pending'
    RETURNING j.id, j.user_id, j.instance_id, j.attempts, j.priority, j.created_at, j.assigned_at;
END
$$
"""

# Lock the live, healthy instances with spare capacity (SKIP LOCKED: concurrent passes fill disjoint
# sets), read their free slots in a statement of its own (a fresh snapshot, taken after the locks),
# and claim per catalogue, batch after batch, until the slots are full or a claim finds nothing. A
# claim may return fewer jobs than slots and more may follow (it stops at each user's share), so only
# an empty claim ends a catalogue; the k-th job took the k-th slot. Slots are spread over the fleet:
# each instance's first slot, then each one's second... Nothing pending: nothing is locked.
DISPATCH_PASS = f"""
CREATE FUNCTION cc_dispatch_pass(
    p_default_limit integer, p_lease_seconds double precision, p_execution_timeout double precision,
    p_batch integer
) RETURNS TABLE (
    id uuid, user_id uuid, instance_id uuid, attempts integer, priority integer,
    created_at timestamptz, assigned_at timestamptz, address text
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_locked uuid[];
    v_catalogue text;
    v_slots uuid[];
    v_got integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM jobs WHERE status = 'pending') THEN
        RETURN;
    END IF;
    SELECT array_agg(l.id) INTO v_locked FROM (
        SELECT i.id FROM inference_instances i
        WHERE i.status = 'live' AND i.healthy AND i.catalogue_hash IS NOT NULL
          AND i.capacity > (SELECT count(*) FROM jobs j WHERE j.instance_id = i.id AND j.status IN {ACTIVE})
        FOR NO KEY UPDATE OF i SKIP LOCKED
    ) l;
    IF v_locked IS NULL THEN
        RETURN;
    END IF;
    FOR v_catalogue, v_slots IN
        SELECT f.catalogue_hash, array_agg(f.id ORDER BY k.n, f.id)
        FROM (
            SELECT i.id, i.catalogue_hash,
                   i.capacity - (SELECT count(*) FROM jobs j
                                 WHERE j.instance_id = i.id AND j.status IN {ACTIVE}) AS free
            FROM inference_instances i
            WHERE i.id = ANY(v_locked)
        ) f
        CROSS JOIN LATERAL generate_series(0, f.free - 1) AS k(n)
        GROUP BY f.catalogue_hash
        ORDER BY f.catalogue_hash
    LOOP
        WHILE cardinality(v_slots) > 0 LOOP
            RETURN QUERY
            SELECT c.id, c.user_id, c.instance_id, c.attempts, c.priority, c.created_at, c.assigned_at,
                   i.address
            FROM cc_claim_jobs(v_catalogue, v_slots[1:p_batch], p_default_limit, p_lease_seconds,
                               p_execution_timeout) c
            JOIN inference_instances i ON i.id = c.instance_id;
            GET DIAGNOSTICS v_got = ROW_COUNT;
            EXIT WHEN v_got = 0;
            v_slots := v_slots[v_got + 1:];
        END LOOP;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(CLAIM_JOBS)
    op.execute(DISPATCH_PASS)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS cc_dispatch_pass(integer, double precision, double precision, integer)"
    )
    op.execute(
        "DROP FUNCTION IF EXISTS cc_claim_jobs(text, uuid[], integer, double precision, double precision)"
    )
