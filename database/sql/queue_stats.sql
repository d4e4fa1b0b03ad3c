-- name: queue_depth
-- Jobs per non-final status. Two counts, each matching a partial index (pending; active), so the cost
-- does not grow with the number of finished jobs.
SELECT 'pending' AS status, count(*) AS n FROM jobs WHERE status = 'pending'
UNION ALL
SELECT status, count(*) FROM jobs
WHERE status IN ('assigned', 'cancelling', 'in_progress')
GROUP BY status

-- name: waiting_for_capability
-- Pending jobs that no live instance can run (none of their catalogues is offered by a live one):
-- the total and the oldest :limit of them.
WITH live AS (
    SELECT coalesce(array_agg(DISTINCT CAST(catalogue_hash AS text)), '{}'::text[]) AS hashes
    FROM inference_instances
    WHERE status = 'live' AND catalogue_hash IS NOT NULL
)
SELECT j.id, count(*) OVER () AS total
FROM jobs j, live
WHERE j.status = 'pending' AND NOT (j.runnable_on && live.hashes)
ORDER BY j.created_at, j.number, j.id
LIMIT :limit

-- name: runs
-- How the given runs stand now (for the execution-time histogram of the jobs a dispatcher handed out).
SELECT id, status, attempts, started_at, finished_at
FROM jobs
WHERE id = ANY(CAST(:ids AS uuid[]))

-- name: instance_states
-- Registered instances per state; a live instance that is not healthy counts as 'unhealthy'.
SELECT CASE WHEN status = 'live' AND NOT healthy THEN 'unhealthy' ELSE status END AS state, count(*) AS n
FROM inference_instances
GROUP BY 1
