-- name: make_routable
-- Pending jobs that a catalogue can run become routable to it (capability routing keys on hashes).
UPDATE jobs
SET runnable_on = array_append(runnable_on, CAST(:hash AS text))
WHERE status = 'pending' AND NOT (CAST(:hash AS text) = ANY(runnable_on))
  AND required_nodes <@ (SELECT node_classes FROM node_catalogues WHERE hash = :hash)
