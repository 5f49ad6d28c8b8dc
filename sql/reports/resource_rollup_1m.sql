-- 1-minute rollups of one resource over [from, to): mean, max and exact p95 per metric.
SELECT
    toUnixTimestamp(minute) * 1000 AS minute_ms,
    sum(samples) AS sample_count,
    sum(cpu_sum) / sum(samples) AS cpu_mean,
    max(cpu_max) AS cpu_max,
    quantileExactInclusiveMerge(0.95)(cpu_q) AS cpu_p95,
    sum(mem_sum) / sum(samples) AS mem_mean,
    max(mem_max) AS mem_max,
    quantileExactInclusiveMerge(0.95)(mem_q) AS mem_p95,
    sum(storage_sum) / sum(samples) AS storage_mean,
    max(storage_max) AS storage_max,
    quantileExactInclusiveMerge(0.95)(storage_q) AS storage_p95
FROM rollup_1m
WHERE resource_id = {resource_id:String}
  AND minute >= fromUnixTimestamp64Milli({from_ms:Int64})
  AND minute < fromUnixTimestamp64Milli({to_ms:Int64})
GROUP BY minute
ORDER BY minute
