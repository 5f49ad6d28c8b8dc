-- Rolling window per resource from the 1-minute rollups (used for the 1 h window): minutes
-- starting in [from, to); mean = sum / samples, max, and p95 merged from the minutes' exact
-- quantile states (exact over every sample of the window, late ones included).
-- all = 1: every resource; else only those listed in resources.
SELECT
    resource_id,
    sum(samples) AS sample_count,
    uniqExact(minute) AS buckets,
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
WHERE minute >= fromUnixTimestamp64Milli({from_ms:Int64})
  AND minute < fromUnixTimestamp64Milli({to_ms:Int64})
  AND ({all:UInt8} = 1 OR has({resources:Array(String)}, resource_id))
GROUP BY resource_id
HAVING sample_count > 0
ORDER BY resource_id
