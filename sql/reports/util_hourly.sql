-- Hourly p95 per resource for hours starting in [from, to) (t-digest per hour): the evidence
-- of "p95 above the high threshold for 3 consecutive hours" (§31).
SELECT
    resource_id,
    toInt64(toUnixTimestamp(hour)) * 1000 AS hour_ms,
    sum(samples) AS sample_count,
    quantileTDigestMerge(0.95)(cpu_q) AS cpu_p95,
    quantileTDigestMerge(0.95)(mem_q) AS mem_p95,
    quantileTDigestMerge(0.95)(storage_q) AS storage_p95,
    max(storage_max) AS storage_max
FROM rollup_1h
WHERE hour >= fromUnixTimestamp64Milli({from_ms:Int64})
  AND hour < fromUnixTimestamp64Milli({to_ms:Int64})
GROUP BY resource_id, hour
ORDER BY resource_id, hour
