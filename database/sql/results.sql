-- name: record_output
-- One output item of a job and, when it is a file, the job's link to that file: one round trip for
-- both (a data-modifying WITH runs whether or not the main statement reads it). Both are idempotent,
-- so a retried report adds nothing.
WITH output AS (
    INSERT INTO outputs (id, job_id, user_id, node_id, output_key, index, file_id, item)
    VALUES (:id, :job_id, :user_id, :node_id, :output_key, :index, :file_id, :item)
    ON CONFLICT (job_id, node_id, output_key, index) DO NOTHING
)
INSERT INTO file_relationships (job_id, file_id, relation)
SELECT :job_id, :file_id, 'output'
WHERE CAST(:file_id AS uuid) IS NOT NULL
ON CONFLICT DO NOTHING

-- name: save_history
-- Write (or rewrite) a job's history entry and, when given, its output kinds (for the jobs filter),
-- in one round trip.
WITH entry AS (
    INSERT INTO history (job_id, user_id, outputs, status, meta)
    VALUES (:job_id, :user_id, :outputs, :status, :meta)
    ON CONFLICT (job_id) DO UPDATE
    SET outputs = excluded.outputs, status = excluded.status, meta = excluded.meta, updated_at = now()
)
UPDATE jobs SET output_types = :types
WHERE id = :job_id AND CAST(:types AS text[]) IS NOT NULL

-- name: put_output_file
-- A job's output file under its name as its owner sees it, repointed if that name is already the same
-- job's (a retried attempt); returns the file's id, or no row when the name is another file's (another
-- job's, or the user's own upload), which is left as it was. One statement, committed on its own.
-- This and `report` run on plain asyncpg connections (`Database.raw()`), the inference instance's
-- per-job path: positional parameters, JSON passed as text (no connection codec is assumed).
-- $1 user id, $2 type, $3 subfolder, $4 filename, $5 content hash, $6 size, $7 content type,
-- $8 storage key, $9 job id.
INSERT INTO files (id, user_id, type, subfolder, filename, content_hash, size, content_type, storage_key, job_id)
VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (user_id, type, subfolder, filename) DO UPDATE
SET content_hash = excluded.content_hash, size = excluded.size, content_type = excluded.content_type,
    storage_key = excluded.storage_key, created_at = now()
WHERE files.job_id = excluded.job_id
RETURNING id

-- name: report
-- A job's end in one statement: its guarded status change (`moved`, the UPDATE that
-- database.job_states builds, which replaces the marker below) and, only when that change is made,
-- its record: the history entry, one row per output item with the job's links to its output files,
-- and the output kinds (set by the UPDATE itself: one statement cannot update a row twice). A refused
-- change writes nothing. Every write is idempotent, as record_output and save_history are.
-- $1 job id, $2 allowed sources, $3 error, $4 instance id (the transition's); $5 user id,
-- $6 history outputs, $7 history status, $8 history meta (JSON text), $9 output kinds (text[]),
-- $10 output items (JSON text: [{node_id, output_key, index, item, file_id}]); $11 channel and
-- $12 payloads (text[]) of the job's closing events: pg_notify'd only when the change is made, so they
-- go out with the commit (NULLs: none).
WITH moved AS (
    /* transition */
),
entry AS (
    INSERT INTO history (job_id, user_id, outputs, status, meta)
    SELECT $1, $5, $6::text::jsonb, $7::text::jsonb, $8::text::jsonb FROM moved
    ON CONFLICT (job_id) DO UPDATE
    SET outputs = excluded.outputs, status = excluded.status, meta = excluded.meta, updated_at = now()
),
item AS (
    SELECT * FROM jsonb_to_recordset($10::text::jsonb)
        AS i(node_id text, output_key text, index integer, item jsonb, file_id uuid)
),
output AS (
    INSERT INTO outputs (id, job_id, user_id, node_id, output_key, index, file_id, item)
    SELECT gen_random_uuid(), $1, $5, i.node_id, i.output_key, i.index, i.file_id, i.item FROM moved, item i
    ON CONFLICT (job_id, node_id, output_key, index) DO NOTHING
),
link AS (
    INSERT INTO file_relationships (job_id, file_id, relation)
    SELECT DISTINCT $1, i.file_id, 'output' FROM moved, item i WHERE i.file_id IS NOT NULL
    ON CONFLICT DO NOTHING
)
-- Referenced, not a bare CTE: a CTE that only reads is evaluated only when the statement uses it.
SELECT (SELECT status FROM moved),
       (SELECT count(pg_notify($11, payload)) FROM moved, unnest(CAST($12 AS text[])) AS payload)
