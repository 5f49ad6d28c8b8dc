-- Annual evaluation of a government unit (§32: 系统上云情况、云资源使用情况), one row per resource of
-- the unit for the days [from, to] (Asia/Shanghai, inclusive; the caller cuts `to` at today).
-- Read by dashboard/billing_unit.py; docs/reports.md has the rules:
--   * the unit's resources: the unit a resource belongs to at the end of the period (its last
--     lifecycle event on or before `to`), leaving out those already deregistered or refused
--     before the period began;
--   * state, spec and class: as of the end of the period (last lifecycle event on or before `to`);
--   * days in service: delivery day (inclusive) to deregistration day (exclusive), as billed;
--   * utilization over the days in service, from the daily rollups: mean (sample-weighted), p95
--     (merged t-digests), and per day a band: low when the day's p95 of every metric is below the
--     low threshold (%), high when any is above the high one, else normal (§29);
--   * band of the period by the same rule over the period's p95: low = persistently low, a
--     candidate for downsizing.
WITH
    ev AS (
        SELECT resource_id, type, ts, toDate(ts, 'Asia/Shanghai') AS d, provider_id, unit_id, vcpu, mem_gb, storage_gb,
               resource_class
        FROM lifecycle_events FINAL
        WHERE toDate(ts, 'Asia/Shanghai') <= {to:Date}
    ),
    res AS (
        SELECT
            resource_id,
            argMax(provider_id, ts) AS provider_id,
            argMax(unit_id, ts) AS unit_at_end,
            argMax(type, ts) AS state,
            max(d) AS last_event_d,
            ifNull(argMaxIf(vcpu, ts, vcpu IS NOT NULL), 0) AS vcpu,
            ifNull(argMaxIf(mem_gb, ts, mem_gb IS NOT NULL), 0) AS mem_gb,
            ifNull(argMaxIf(storage_gb, ts, storage_gb IS NOT NULL), 0) AS storage_gb,
            argMaxIf(resource_class, ts, resource_class != '') AS cls,
            minIf(toNullable(d), type = 'delivered') AS delivered_d,
            minIf(toNullable(d), type = 'deregistered') AS deregistered_d
        FROM ev
        GROUP BY resource_id
        HAVING unit_at_end = {unit:String} AND NOT (state IN ('deregistered', 'refused') AND last_event_d < {from:Date})
    ),
    svc AS (
        SELECT
            resource_id,
            if(delivered_d IS NULL, {from:Date}, greatest(assumeNotNull(delivered_d), {from:Date})) AS lo,
            if(delivered_d IS NULL, {from:Date}, least(ifNull(deregistered_d, {to:Date} + 1), {to:Date} + 1)) AS hi
        FROM res
    ),
    daily AS (
        SELECT
            r.resource_id AS resource_id, r.day AS day, sum(r.samples) AS samples,
            sum(r.cpu_sum) AS cpu_sum, sum(r.mem_sum) AS mem_sum, sum(r.storage_sum) AS storage_sum,
            quantileTDigestMergeState(0.95)(r.cpu_q) AS cpu_st, quantileTDigestMerge(0.95)(r.cpu_q) AS cpu_p95,
            quantileTDigestMergeState(0.95)(r.mem_q) AS mem_st, quantileTDigestMerge(0.95)(r.mem_q) AS mem_p95,
            quantileTDigestMergeState(0.95)(r.storage_q) AS storage_st,
            quantileTDigestMerge(0.95)(r.storage_q) AS storage_p95
        FROM rollup_1d AS r
        INNER JOIN svc AS s ON s.resource_id = r.resource_id
        WHERE r.resource_id IN (SELECT resource_id FROM svc) AND r.day >= {from:Date} AND r.day <= {to:Date}
          AND r.day >= s.lo AND r.day < s.hi
        GROUP BY r.resource_id, r.day
        HAVING samples > 0
    ),
    util AS (
        SELECT
            resource_id,
            count() AS days_measured,
            sum(cpu_sum) / sum(samples) AS cpu_mean, quantileTDigestMerge(0.95)(cpu_st) AS cpu_p95,
            sum(mem_sum) / sum(samples) AS mem_mean, quantileTDigestMerge(0.95)(mem_st) AS mem_p95,
            sum(storage_sum) / sum(samples) AS storage_mean, quantileTDigestMerge(0.95)(storage_st) AS storage_p95,
            countIf(greatest(daily.cpu_p95, daily.mem_p95, daily.storage_p95) < {low:Float64}) AS days_low,
            countIf(greatest(daily.cpu_p95, daily.mem_p95, daily.storage_p95) > {high:Float64}) AS days_high
        FROM daily
        GROUP BY resource_id
    ),
    inv AS (
        SELECT resource_id, argMax(name, version) AS name
        FROM inventory
        WHERE resource_id IN (SELECT resource_id FROM res)
        GROUP BY resource_id
    )
SELECT
    r.resource_id AS resource_id, if(ifNull(i.name, '') = '', r.resource_id, i.name) AS name,
    r.provider_id AS provider_id, r.state AS state, if(r.cls = '', 'standard', r.cls) AS resource_class,
    r.vcpu AS vcpu, r.mem_gb AS mem_gb, r.storage_gb AS storage_gb,
    r.delivered_d AS delivered, r.deregistered_d AS deregistered,
    toUInt8(ifNull(r.delivered_d >= {from:Date}, 0)) AS delivered_in_period,
    toUInt8(ifNull(r.deregistered_d >= {from:Date}, 0)) AS deregistered_in_period,
    toUInt8(r.delivered_d IS NOT NULL AND (r.deregistered_d IS NULL OR assumeNotNull(r.deregistered_d) > {to:Date}))
        AS in_service_at_end,
    toUInt32(greatest(s.hi - s.lo, 0)) AS days_in_service,
    ifNull(u.days_measured, 0) AS days_measured,
    round(u.cpu_mean, 2) AS cpu_mean, round(u.cpu_p95, 2) AS cpu_p95,
    round(u.mem_mean, 2) AS mem_mean, round(u.mem_p95, 2) AS mem_p95,
    round(u.storage_mean, 2) AS storage_mean, round(u.storage_p95, 2) AS storage_p95,
    ifNull(u.days_low, 0) AS days_low,
    ifNull(u.days_measured - u.days_low - u.days_high, 0) AS days_normal,
    ifNull(u.days_high, 0) AS days_high,
    multiIf(ifNull(u.days_measured, 0) = 0, '',
            greatest(u.cpu_p95, u.mem_p95, u.storage_p95) > {high:Float64}, 'high',
            greatest(u.cpu_p95, u.mem_p95, u.storage_p95) < {low:Float64}, 'low', 'normal') AS band
FROM res AS r
LEFT JOIN svc AS s ON s.resource_id = r.resource_id
LEFT JOIN util AS u ON u.resource_id = r.resource_id
LEFT JOIN inv AS i ON i.resource_id = r.resource_id
ORDER BY resource_id
SETTINGS join_use_nulls = 1
