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
