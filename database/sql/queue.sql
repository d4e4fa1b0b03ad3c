-- name: claim_jobs
-- Claim up to cardinality(:slots) pending jobs runnable on :catalogue and assign the k-th to slot k.
-- Priority first; then round-robin over users (each user's 1st job, then each user's 2nd, ...;
-- users served longest ago first); never past a user's limit of active jobs. User rows are locked
-- (SKIP LOCKED) so concurrent dispatchers serve disjoint users and cannot overshoot a limit; job rows
-- are locked and re-checked (status = 'pending' at the locking level) so no job is handed out twice.
WITH RECURSIVE queued_users(user_id) AS (
    (SELECT user_id FROM jobs WHERE status = 'pending' ORDER BY user_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.user_id FROM jobs j
            WHERE j.status = 'pending' AND j.user_id > q.user_id
            ORDER BY j.user_id LIMIT 1)
    FROM queued_users q
    WHERE q.user_id IS NOT NULL
),
eligible AS (
    SELECT u.id AS user_id, u.last_dispatched_at,
           coalesce(u.max_concurrent_jobs, :default_limit) - u.active_jobs AS free
    FROM users u
    JOIN queued_users q ON q.user_id = u.id
    WHERE u.active_jobs < coalesce(u.max_concurrent_jobs, :default_limit)
    FOR UPDATE OF u SKIP LOCKED
),
candidates AS (
    SELECT c.id, c.priority, c.rank, e.user_id, e.last_dispatched_at
    FROM eligible e
    CROSS JOIN LATERAL (
        SELECT p.id, p.priority,
               row_number() OVER (ORDER BY p.priority DESC, p.number, p.created_at) AS rank
        FROM (
            SELECT id, priority, number, created_at
            FROM jobs
            WHERE user_id = e.user_id AND status = 'pending'
              AND CAST(:catalogue AS text) = ANY(runnable_on)
            ORDER BY priority DESC, number, created_at
            LIMIT least(e.free, cardinality(CAST(:slots AS uuid[])))
        ) p
    ) c
),
chosen AS (
    SELECT j.id, j.user_id
    FROM candidates c
    JOIN jobs j ON j.id = c.id
    WHERE j.status = 'pending'
    ORDER BY c.priority DESC, c.rank, c.last_dispatched_at NULLS FIRST, c.user_id
    LIMIT cardinality(CAST(:slots AS uuid[]))
    FOR UPDATE OF j SKIP LOCKED
),
numbered AS (
    SELECT id, user_id, row_number() OVER () AS slot FROM chosen
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
RETURNING j.id, j.user_id, j.instance_id, j.attempts, j.priority, j.created_at

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
-- being cancelled ends cancelled. Returns each job with the instance that lost it.
WITH expired AS (
    SELECT id, instance_id AS lost_instance_id, status AS old_status
    FROM jobs
    WHERE status IN ('assigned', 'in_progress', 'cancelling') AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET status = CASE
        WHEN e.old_status = 'cancelling' THEN 'cancelled'
        WHEN j.attempts >= j.max_attempts THEN 'error'
        ELSE 'pending' END,
    error = CASE
        WHEN e.old_status <> 'cancelling' AND j.attempts >= j.max_attempts THEN jsonb_build_object(
            'type', 'lease_expired',
            'message', format('The job lost its worker %s times (lease expired); giving up.', j.attempts))
        ELSE j.error END,
    instance_id = CASE WHEN e.old_status <> 'cancelling' AND j.attempts < j.max_attempts
                       THEN NULL ELSE j.instance_id END,
    assigned_at = CASE WHEN e.old_status <> 'cancelling' AND j.attempts < j.max_attempts
                       THEN NULL ELSE j.assigned_at END,
    finished_at = CASE WHEN e.old_status = 'cancelling' OR j.attempts >= j.max_attempts
                       THEN now() ELSE NULL END,
    sealed_secrets = CASE WHEN e.old_status = 'cancelling' OR j.attempts >= j.max_attempts
                          THEN NULL ELSE j.sealed_secrets END,
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
-- Pending jobs that waited past their queue deadline.
WITH late AS (
    SELECT id FROM jobs
    WHERE status = 'pending' AND queue_deadline_at < now()
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
