-- Rolling window per resource from the hourly rollups (used for the 24 h and 7 d windows):
-- hours starting in [from, to); mean = sum / samples, max, and p95 merged from the hours'
-- t-digest states (approximate, bounded memory). all = 1: every resource; else those listed.
SELECT
    resource_id,
    sum(samples) AS sample_count,
    uniqExact(hour) AS buckets,
    sum(cpu_sum) / sum(samples) AS cpu_mean,
    max(cpu_max) AS cpu_max,
    quantileTDigestMerge(0.95)(cpu_q) AS cpu_p95,
    sum(mem_sum) / sum(samples) AS mem_mean,
    max(mem_max) AS mem_max,
    quantileTDigestMerge(0.95)(mem_q) AS mem_p95,
    sum(storage_sum) / sum(samples) AS storage_mean,
    max(storage_max) AS storage_max,
    quantileTDigestMerge(0.95)(storage_q) AS storage_p95
FROM rollup_1h
WHERE hour >= fromUnixTimestamp64Milli({from_ms:Int64})
  AND hour < fromUnixTimestamp64Milli({to_ms:Int64})
  AND ({all:UInt8} = 1 OR has({resources:Array(String)}, resource_id))
GROUP BY resource_id
HAVING sample_count > 0
ORDER BY resource_id
