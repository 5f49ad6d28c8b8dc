-- Recommendations that block a new proposal for the same resource and metric: the open ones
-- (proposed, approved) and those rejected since the start of the quiet period.
SELECT
    rec_id, resource_id, provider_id, unit_id, district_id, metric, direction, status,
    current_size, target_size, size_unit, p95_pct, target_pct, evidence, proposed_at,
    decided_at, decided_by, reason, applied_at, applied_event_id
FROM recommendations FINAL
WHERE status IN ('proposed', 'approved')
   OR (status = 'rejected' AND decided_at >= fromUnixTimestamp64Milli({since_ms:Int64}))
