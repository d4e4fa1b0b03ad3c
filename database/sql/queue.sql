-- name: claim_jobs
-- Claim up to cardinality(:slots) pending jobs runnable on :catalogue and assign the k-th to slot k.
-- Order: priority first; then round-robin over users (each user's 1st job, then each user's 2nd, ...;
-- users served longest ago first); never past a user's limit of active jobs (max_concurrent_jobs,
-- else :default_limit). User rows are locked (SKIP LOCKED) so concurrent dispatchers serve disjoint
-- users and cannot overshoot a limit; job rows are locked and re-checked (status = 'pending' at the
-- locking level) so no job is handed out twice.
-- Cost is bounded by the batch, not the queue: one index probe per user with pending work (skip scan
-- over ix_jobs_pending_by_user), then only the first cardinality(:slots) users in serving order are
-- locked and read, each at most `depth` jobs deep. A user cut off at its depth contributes a sentinel
-- (its next job); nothing at or after the first sentinel in serving order is claimed, so the result
-- is always an exact prefix of the full order and may hold fewer jobs than slots: claim again.
WITH RECURSIVE heads(user_id, priority) AS (
    -- Each user with a pending job runnable here, with that user's first such job's priority.
    (SELECT user_id, priority FROM jobs
     WHERE status = 'pending' AND CAST(:catalogue AS text) = ANY(runnable_on)
     ORDER BY user_id, priority DESC, number, created_at
     LIMIT 1)
    UNION ALL
    SELECT n.user_id, n.priority
    FROM heads h
    CROSS JOIN LATERAL (
        SELECT j.user_id, j.priority FROM jobs j
        WHERE j.status = 'pending' AND j.user_id > h.user_id
          AND CAST(:catalogue AS text) = ANY(j.runnable_on)
        ORDER BY j.user_id, j.priority DESC, j.number, j.created_at
        LIMIT 1
    ) n
),
first_served AS (
    -- A user whose first job is not among the first N in serving order gets nothing from N slots.
    SELECT h.user_id, h.priority
    FROM heads h
    JOIN users u ON u.id = h.user_id
    WHERE u.active_jobs < coalesce(u.max_concurrent_jobs, :default_limit)
    ORDER BY h.priority DESC, u.last_dispatched_at NULLS FIRST, h.user_id
    LIMIT cardinality(CAST(:slots AS uuid[]))
),
eligible AS (
    -- Locking re-reads the row: free is computed from the latest committed active_jobs.
    -- NO KEY UPDATE, the lock the UPDATEs below take anyway: it excludes other claims and the
    -- active_jobs trigger as FOR UPDATE would, but not the KEY SHARE lock that inserting a job takes
    -- on its user (the foreign key), so a user submitting right now is neither skipped here nor
    -- made to wait for this claim.
    SELECT u.id AS user_id, u.last_dispatched_at, f.priority AS head_priority,
           coalesce(u.max_concurrent_jobs, :default_limit) - u.active_jobs AS free
    FROM users u
    JOIN first_served f ON f.user_id = u.id
    WHERE u.active_jobs < coalesce(u.max_concurrent_jobs, :default_limit)
    FOR NO KEY UPDATE OF u SKIP LOCKED
),
sized AS (
    -- Depth: enough to fill the batch if every user at the same head priority takes an equal share.
    SELECT user_id, last_dispatched_at, free,
           (cardinality(CAST(:slots AS uuid[])) + count(*) OVER (PARTITION BY head_priority) - 1)
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
              AND CAST(:catalogue AS text) = ANY(runnable_on)
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
    LIMIT cardinality(CAST(:slots AS uuid[]))
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
    instance_id = (CAST(:slots AS uuid[]))[n.slot],
    attempts = j.attempts + 1,
    assigned_at = now(),
    updated_at = now(),
    lease_expires_at = now() + make_interval(secs => :lease_seconds),
    execution_deadline_at = now() + make_interval(secs => :execution_timeout)
FROM numbered n
WHERE j.id = n.id AND j.status = 'pending'
RETURNING j.id, j.user_id, j.instance_id, j.attempts, j.priority, j.created_at, j.assigned_at

-- name: renew_leases
-- Extend the leases an instance still holds; the answer tells it which jobs are still its own and
-- which of them to interrupt (status 'cancelling').
UPDATE jobs
SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
WHERE id = ANY(CAST(:job_ids AS uuid[]))
  AND instance_id = :instance_id
  AND status IN ('assigned', 'in_progress', 'cancelling')
RETURNING id, status

-- name: expire_leases
-- Active jobs whose lease ran out: re-queued while attempts remain, else error; a job that was
-- being cancelled ends cancelled. The attempt limit is the job's own, capped by :max_attempts when
-- that is not NULL. Returns each job with the instance that lost it.
WITH expired AS (
    SELECT id, instance_id AS lost_instance_id, status AS old_status,
           status = 'cancelling' AS was_cancelling,
           attempts >= least(max_attempts, CAST(:max_attempts AS integer)) AS exhausted
    FROM jobs
    WHERE status IN ('assigned', 'in_progress', 'cancelling') AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET status = CASE
        WHEN e.was_cancelling THEN 'cancelled'
        WHEN e.exhausted THEN 'error'
        ELSE 'pending' END,
    error = CASE
        WHEN NOT e.was_cancelling AND e.exhausted THEN jsonb_build_object(
            'type', 'lease_expired',
            'message', format('The job lost its worker %s times (lease expired); giving up.', j.attempts))
        ELSE j.error END,
    instance_id = CASE WHEN e.was_cancelling OR e.exhausted THEN j.instance_id ELSE NULL END,
    assigned_at = CASE WHEN e.was_cancelling OR e.exhausted THEN j.assigned_at ELSE NULL END,
    finished_at = CASE WHEN e.was_cancelling OR e.exhausted THEN now() ELSE NULL END,
    sealed_secrets = CASE WHEN e.was_cancelling OR e.exhausted THEN NULL ELSE j.sealed_secrets END,
    lease_expires_at = NULL,
    updated_at = now()
FROM expired e
WHERE j.id = e.id
RETURNING j.id, j.user_id, j.status, e.lost_instance_id, e.old_status, j.attempts

-- name: execution_timeouts
-- Running jobs past their execution deadline: set timeout; the caller interrupts them on their instance.
WITH late AS (
    SELECT id FROM jobs
    WHERE status IN ('assigned', 'in_progress') AND execution_deadline_at < now()
    ORDER BY execution_deadline_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET status = 'timeout',
    error = jsonb_build_object('type', 'execution_timeout',
                               'message', 'The job ran past its execution deadline and was interrupted.'),
    finished_at = now(), lease_expires_at = NULL, sealed_secrets = NULL, updated_at = now()
FROM late
WHERE j.id = late.id
RETURNING j.id, j.user_id, j.instance_id

-- name: queue_timeouts
-- Pending jobs that waited past their queue deadline, or longer than :max_wait seconds since they were
-- submitted (when :max_wait is not NULL).
WITH late AS (
    SELECT id FROM jobs
    WHERE status = 'pending'
      AND (queue_deadline_at < now()
           OR created_at < now() - make_interval(secs => CAST(:max_wait AS double precision)))
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET status = 'timeout',
    error = jsonb_build_object('type', 'queue_timeout',
                               'message', 'The job waited in the queue past its deadline.'),
    finished_at = now(), sealed_secrets = NULL, updated_at = now()
FROM late
WHERE j.id = late.id
RETURNING j.id, j.user_id

-- name: return_unstarted
-- A hand-off the instance refused or never received: back to pending without spending the attempt
-- (no ComfyUI ever saw the job). Guarded by instance and attempt, so it cannot undo a later claim.
UPDATE jobs
SET status = 'pending', instance_id = NULL, assigned_at = NULL, lease_expires_at = NULL,
    execution_deadline_at = NULL, attempts = greatest(attempts - 1, 0), updated_at = now()
WHERE id = :job_id AND instance_id = :instance_id AND attempts = :attempt AND status = 'assigned'
RETURNING id, user_id

-- name: end_leases_of
-- The leases held by instances found lost end now, so expire_leases re-queues their jobs at once.
UPDATE jobs
SET lease_expires_at = now() - interval '1 second'
WHERE instance_id = ANY(CAST(:instance_ids AS uuid[]))
  AND status IN ('assigned', 'in_progress', 'cancelling')
  AND lease_expires_at >= now()
RETURNING id

-- name: has_pending
-- Whether any job waits at all (skips the instance locking of a scheduling pass when none does).
SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'pending')
