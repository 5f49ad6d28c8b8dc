-- Newest accepted sample time (epoch ms) of resources whose live state is missing in Redis (e.g.
-- Redis lost it): the nodata judgement's fallback (streams/quality.py). Bounded in time: the
-- samples table is ordered by (resource_id, ts).
SELECT resource_id, toInt64(toUnixTimestamp64Milli(max(ts))) AS last_ms
FROM samples
WHERE resource_id IN {ids:Array(String)} AND ts >= fromUnixTimestamp64Milli({since_ms:Int64})
GROUP BY resource_id
