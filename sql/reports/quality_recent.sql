-- Accepted samples per resource with an event time in [from_ms, to_ms) (whole minutes), from
-- recent_counts_1m: the provider completeness behind `telemetry_quality` events
-- (streams/quality.py; docs/telemetry-quality.md). Expected counts come from the registry.
SELECT resource_id, sum(samples) AS samples
FROM recent_counts_1m
WHERE minute >= toDateTime(intDiv({from_ms:Int64}, 1000), 'UTC')
  AND minute < toDateTime(intDiv({to_ms:Int64}, 1000), 'UTC')
GROUP BY resource_id
