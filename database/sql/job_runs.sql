-- An inference instance's reads of the job it runs, on plain asyncpg connections (`Database.raw()`):
-- positional parameters, JSON read as text (so no connection codec is assumed).

-- name: load_job
-- What the instance needs to run a job, and what the hand-off check compares (instance, status,
-- attempt). $1 job id.
SELECT id, user_id, status, instance_id, attempts, max_attempts, execution_deadline_at,
       prompt::text AS prompt, extra_data::text AS extra_data, sealed_secrets
FROM jobs
WHERE id = $1
