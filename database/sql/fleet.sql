-- name: lock_free_instances
-- Live, healthy instances that seem to have spare capacity, locked for one scheduling transaction.
-- SKIP LOCKED: concurrent dispatchers fill disjoint sets of instances, so no slot is filled twice.
-- With :if_pending, none at all unless a job is pending (a pass with nothing to do locks nothing,
-- and finds that out in this same round trip).
SELECT i.id
FROM inference_instances i
WHERE i.status = 'live' AND i.healthy AND i.catalogue_hash IS NOT NULL
  AND (NOT CAST(:if_pending AS boolean) OR EXISTS (SELECT 1 FROM jobs WHERE status = 'pending'))
  AND i.capacity > (SELECT count(*) FROM jobs j
                    WHERE j.instance_id = i.id AND j.status IN ('assigned', 'cancelling', 'in_progress'))
FOR NO KEY UPDATE OF i SKIP LOCKED

-- name: free_slots_of
-- Spare capacity of instances locked by lock_free_instances. A separate statement on purpose: its
-- snapshot is taken after the locks, so it sees every claim the previous lock holder committed.
SELECT i.id, i.address, i.catalogue_hash, i.capacity - a.n AS free
FROM inference_instances i
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM jobs j
    WHERE j.instance_id = i.id AND j.status IN ('assigned', 'cancelling', 'in_progress')
) a
WHERE i.id = ANY(CAST(:ids AS uuid[])) AND i.capacity > a.n
ORDER BY i.id

-- name: make_routable
-- Pending jobs that a catalogue can run become routable to it (capability routing keys on hashes).
UPDATE jobs
SET runnable_on = array_append(runnable_on, CAST(:hash AS text))
WHERE status = 'pending' AND NOT (CAST(:hash AS text) = ANY(runnable_on))
  AND required_nodes <@ (SELECT node_classes FROM node_catalogues WHERE hash = :hash)
