-- Annual evaluation of a unit (§31, §32): the right-sizing recommendations for the unit's resources
-- ({resources}) proposed on or before `to` (Asia/Shanghai) that are still open (proposed, or
-- approved and not yet applied) — the current status, read with FINAL.
SELECT
    rec_id, resource_id, provider_id, metric, direction, status, current_size, target_size, size_unit,
    round(p95_pct, 1) AS p95_pct, toString(toDate(proposed_at, 'Asia/Shanghai')) AS proposed_on
FROM recommendations FINAL
WHERE has({resources:Array(String)}, resource_id) AND status IN ('proposed', 'approved')
  AND toDate(proposed_at, 'Asia/Shanghai') <= {to:Date}
ORDER BY proposed_at, rec_id
