-- Provider report (§26), per resource for the days [from, to] (Asia/Shanghai, inclusive): days in
-- service (delivery inclusive, deregistration exclusive, as billed), telemetry completeness over
-- those days (capped per day) and late share, and utilization from the daily rollups: mean, max
-- and p95 (merged t-digests) of cpu, memory and storage. band: low when the p95 of every metric is
-- below the low threshold (%), high when any p95 is above the high one (§29), else normal. The
-- caller cuts `to` at today; today (the parameter `today`) expects only the samples of its first
-- `today_s` seconds: it is not over yet.
WITH
    life AS (
        SELECT
            resource_id,
            minIf(toDate(ts, 'Asia/Shanghai'), type = 'delivered') AS start_d,
            minIf(toNullable(toDate(ts, 'Asia/Shanghai')), type = 'deregistered') AS end_d
        FROM lifecycle_events FINAL
        WHERE provider_id = {provider:String}
        GROUP BY resource_id
        HAVING countIf(type = 'delivered') > 0
    ),
    inv AS (
        SELECT resource_id, argMax(name, version) AS name, argMax(unit_id, version) AS unit_id,
               argMax(state, version) AS state, argMax(interval_s, version) AS interval_s
        FROM inventory
        WHERE provider_id = {provider:String}
        GROUP BY resource_id
    ),
    svc AS (
        SELECT
            resource_id, start_d, end_d,
            greatest(start_d, {from:Date}) AS lo,
            least(ifNull(end_d, {to:Date} + 1), {to:Date} + 1) AS hi
        FROM life
    ),
    roll AS (
        SELECT
            r.resource_id AS resource_id,
            sumIf(least(toFloat64(r.samples),
                        if(r.day = {today:Date}, {today_s:Float64}, 86400.0) / if(i.interval_s = 0, 60, i.interval_s)),
                  r.day >= s.lo AND r.day < s.hi) AS counted,
            sum(r.samples) AS samples, sum(r.late) AS late,
            sum(r.cpu_sum) / nullIf(sum(r.samples), 0) AS cpu_mean, max(r.cpu_max) AS cpu_max,
            quantileTDigestMerge(0.95)(r.cpu_q) AS cpu_p95,
            sum(r.mem_sum) / nullIf(sum(r.samples), 0) AS mem_mean, max(r.mem_max) AS mem_max,
            quantileTDigestMerge(0.95)(r.mem_q) AS mem_p95,
            sum(r.storage_sum) / nullIf(sum(r.samples), 0) AS storage_mean, max(r.storage_max) AS storage_max,
            quantileTDigestMerge(0.95)(r.storage_q) AS storage_p95
        FROM rollup_1d AS r
        INNER JOIN svc AS s ON s.resource_id = r.resource_id
        LEFT JOIN inv AS i ON i.resource_id = r.resource_id
        WHERE r.provider_id = {provider:String} AND r.day >= {from:Date} AND r.day <= {to:Date}
        GROUP BY r.resource_id
    )
SELECT
    s.resource_id AS resource_id, i.name AS name, i.unit_id AS unit_id, i.state AS state,
    toUInt32(greatest(s.hi - s.lo, 0)) AS days_in_service,
    if(days_in_service = 0, NULL,
       round(100 * ifNull(r.counted, 0)
             / ((days_in_service * 86400.0 - if({today:Date} >= s.lo AND {today:Date} < s.hi, 86400.0 - {today_s:Float64}, 0))
                / if(i.interval_s = 0, 60, i.interval_s)), 2))
        AS completeness_pct,
    if(ifNull(r.samples, 0) = 0, NULL, round(100 * r.late / r.samples, 2)) AS late_pct,
    round(r.cpu_mean, 1) AS cpu_mean, if(isNaN(r.cpu_p95), NULL, round(r.cpu_p95, 1)) AS cpu_p95, r.cpu_max AS cpu_max,
    round(r.mem_mean, 1) AS mem_mean, if(isNaN(r.mem_p95), NULL, round(r.mem_p95, 1)) AS mem_p95, r.mem_max AS mem_max,
    round(r.storage_mean, 1) AS storage_mean, if(isNaN(r.storage_p95), NULL, round(r.storage_p95, 1)) AS storage_p95, r.storage_max AS storage_max,
    multiIf(ifNull(r.samples, 0) = 0 OR isNaN(greatest(r.cpu_p95, r.mem_p95, r.storage_p95)), '',
            greatest(r.cpu_p95, r.mem_p95, r.storage_p95) > {high:Float64}, 'high',
            greatest(r.cpu_p95, r.mem_p95, r.storage_p95) < {low:Float64}, 'low', 'normal') AS band
FROM svc AS s
LEFT JOIN inv AS i ON i.resource_id = s.resource_id
LEFT JOIN roll AS r ON r.resource_id = s.resource_id
WHERE s.hi > s.lo
ORDER BY resource_id
SETTINGS join_use_nulls = 1
