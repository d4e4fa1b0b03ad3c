-- Hot statements of ingest, run through Database.raw() (asyncpg): positional parameters.

-- name: submit_job
-- Insert a pending job in one statement, routed and guarded:
-- * runnable_on: every catalogue of a registered instance (live or away: it may come back) that offers
--   all of $12 (required_nodes);
-- * the guard: ingest validated the prompt against a cached library, the catalogues of the live
--   instances $16 (sorted). Unless those are still exactly the live ones, nothing is inserted and
--   `current` is false; `live` then tells the caller what to validate against. $16 NULL: no guard.
-- * number: $5 when given, else the next queue number (negated when $15, ComfyUI's `front`);
-- * a repeated id (whoever owns it) inserts nothing: `number` is NULL with `current` true;
-- * once inserted, pg_notify($17, p) for each p of $18 (the job's status event, delivered on commit).
-- $1 id, $2 user_id, $3 status, $4 priority, $5 number, $6 prompt, $7 extra_data, $8 sealed_secrets,
-- $9 client_id, $10 outputs_to_execute, $11 workflow_id, $12 required_nodes, $13 max_attempts,
-- $14 queue_deadline_at, $15 front, $16 expected live catalogues, $17 channel, $18 payloads
WITH catalogues AS (
    SELECT CAST(c.hash AS text) AS hash, bool_or(i.status = 'live') AS live,
           c.node_classes @> CAST($12 AS text[]) AS runnable
    FROM node_catalogues c JOIN inference_instances i ON i.catalogue_hash = c.hash
    GROUP BY c.hash
),
routing AS (
    SELECT coalesce(array_agg(hash ORDER BY hash) FILTER (WHERE live), '{}') AS live,
           coalesce(array_agg(hash ORDER BY hash) FILTER (WHERE runnable), '{}') AS runnable
    FROM catalogues
),
inserted AS (
    INSERT INTO jobs (id, user_id, status, priority, number, prompt, extra_data, sealed_secrets, client_id,
                      outputs_to_execute, workflow_id, required_nodes, runnable_on, max_attempts,
                      queue_deadline_at)
    SELECT $1, $2, $3, $4,
           coalesce(CAST($5 AS double precision),
                    CASE WHEN $15 THEN -nextval('job_number_seq') ELSE nextval('job_number_seq') END),
           CAST($6 AS jsonb), CAST($7 AS jsonb), $8, $9, CAST($10 AS jsonb), $11, $12, routing.runnable, $13,
           $14
    FROM routing
    WHERE CAST($16 AS text[]) IS NULL OR routing.live = CAST($16 AS text[])
    ON CONFLICT (id) DO NOTHING
    RETURNING number
)
SELECT routing.live, CAST($16 AS text[]) IS NULL OR routing.live = CAST($16 AS text[]) AS current,
       (SELECT number FROM inserted) AS number,
       (SELECT count(pg_notify($17, payload)) FROM inserted, unnest(CAST($18 AS text[])) AS payload)
         AS notified
FROM routing

-- name: queue_remaining
-- ComfyUI's `queue_remaining` of one user: running plus pending jobs.
SELECT count(*) FROM jobs
WHERE user_id = $1 AND status IN ('pending', 'assigned', 'in_progress', 'cancelling')
