-- Telemetry of one provider from resources that are not registered (§34: not under supervision,
-- so not billable), for samples whose own time falls on a day in [from, to] (Asia/Shanghai),
-- grouped per resource id. Source: the dead letters with reason unregistered_resource; the payload
-- is the rejected sample (telemetry.v1), so its resource id and event time are read from it. A dead
-- letter stored twice (a replay) is counted once: uniqExact on its source position.
-- inventory_state is the resource's state where the inventory knows it (e.g. 'applied': registered
-- but never delivered), '' where it does not.
SELECT
    u.resource_id AS resource_id,
    u.samples AS samples,
    u.days_seen AS days_seen,
    u.first_seen AS first_seen,
    u.last_seen AS last_seen,
    ifNull(i.state, '') AS inventory_state
FROM
(
    SELECT
        JSONExtractString(payload, 'resource_id') AS resource_id,
        uniqExact(src_topic, src_partition, src_offset, idx) AS samples,
        uniqExact(toDate(sample_ts, 'Asia/Shanghai')) AS days_seen,
        min(sample_ts) AS first_seen,
        max(sample_ts) AS last_seen
    FROM
    (
        SELECT
            payload, src_topic, src_partition, src_offset, idx,
            ifNull(parseDateTime64BestEffortOrNull(JSONExtractString(payload, 'ts'), 3, 'UTC'), ingest_ts) AS sample_ts
        FROM deadletters
        WHERE provider_id = {provider:String} AND reason = 'unregistered_resource'
    )
    WHERE toDate(sample_ts, 'Asia/Shanghai') >= {from:Date} AND toDate(sample_ts, 'Asia/Shanghai') <= {to:Date}
    GROUP BY resource_id
) AS u
LEFT JOIN
(
    SELECT resource_id, argMax(state, version) AS state FROM inventory GROUP BY resource_id
) AS i ON i.resource_id = u.resource_id
ORDER BY resource_id
SETTINGS join_use_nulls = 1
