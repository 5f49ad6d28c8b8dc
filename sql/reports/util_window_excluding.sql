-- One resource's window from the hourly rollups, leaving out the hours listed in excluded_ms
-- (hour starts, epoch ms): right-sizing evidence without the unit's declared peak / trough
-- periods (§30). Same columns as util_window_hours.sql.
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
WHERE resource_id = {resource_id:String}
  AND hour >= fromUnixTimestamp64Milli({from_ms:Int64})
  AND hour < fromUnixTimestamp64Milli({to_ms:Int64})
  AND NOT has({excluded_ms:Array(Int64)}, toInt64(toUnixTimestamp(hour)) * 1000)
GROUP BY resource_id
HAVING sample_count > 0
