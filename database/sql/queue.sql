-- name: claim_jobs
-- Claim up to cardinality(:slots) pending jobs runnable on :catalogue and assign the k-th to slot k,
-- fairly and within each user's limit: cc_claim_jobs(), created by migration 0003, which tells how.
SELECT * FROM cc_claim_jobs(CAST(:catalogue AS text), CAST(:slots AS uuid[]), :default_limit,
                            :lease_seconds, :execution_timeout)

-- name: dispatch_pass
-- A whole scheduling pass in one statement (cc_dispatch_pass(), migration 0003): locks the free
-- instances, claims jobs for their slots per catalogue in batches of :batch, and returns each claimed
-- job with its instance's address. The locks last until this statement commits.
SELECT * FROM cc_dispatch_pass(:default_limit, :lease_seconds, :execution_timeout, :batch)

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
