-- Telemetry quality (R4; §17, §34) for the Asia/Shanghai days [from, to] (both inclusive), up to
-- {now_ms}: one row per provider (level 'provider'), per resource (level 'resource') and, when
-- {days:UInt8} = 1, per resource-day (level 'day'). Read by dashboard/api_quality.py; definitions
-- in docs/telemetry-quality.md:
--   * in service: from the resource's first `delivered` to its `deregistered` (lifecycle_events);
--   * expected samples of a resource-day: in-service seconds of that day (up to now) / interval_s;
--     received: rollup_1d.samples; counted: least(received, expected) per resource-day, so one
--     over-reporting day never hides a silent one; completeness = counted / expected;
--   * under supervision (§34): EXACTLY the fee assessment's test (sql/reports/assessment_lines.sql):
--     NOT rollup_1d.samples < {threshold} * (86400 / interval_s), on the billing days (delivery day
--     inclusive, deregistration day exclusive), threshold = supervision_threshold_pct / 100 of the
--     fee scheme, interval_s = the inventory's latest (at least 1); today, which is not over, expects
--     only its elapsed seconds (as the assessment's `today_s`);
--   * lateness: p50 / p95 of (ingest_ts - ts) in seconds, merged from lateness_1d t-digests;
--   * invalid: telemetry dead letters (FINAL: a replayed dead letter counts once), except
--     `duplicate_batch` (a provider retrying a batch it already delivered sent nothing invalid);
--     per resource where the rejected sample names one, per provider all of them (whole messages
--     and unknown resources included); invalid rate = invalid / (accepted + invalid).
WITH
    life AS (
        SELECT
            resource_id,
            any(provider_id) AS provider_id,
            toUnixTimestamp64Milli(minIf(ts, type = 'delivered')) AS delivered_ms,
            minIf(toNullable(toUnixTimestamp64Milli(ts)), type = 'deregistered') AS dereg_ms
        FROM
        (
            SELECT resource_id, provider_id, type, ts
            FROM lifecycle_events FINAL
            WHERE ({provider:String} = '' OR provider_id = {provider:String})
              AND ({resource:String} = '' OR resource_id = {resource:String})
        )
        GROUP BY resource_id
        HAVING countIf(type = 'delivered') > 0
    ),
    inv AS (
        SELECT resource_id, argMax(name, version) AS name, argMax(unit_id, version) AS unit_id,
               argMax(district_id, version) AS district_id, greatest(argMax(interval_s, version), 1) AS interval_s
        FROM inventory
        WHERE resource_id IN (SELECT resource_id FROM life)
        GROUP BY resource_id
    ),
    days AS (
        SELECT
            resource_id, provider_id, delivered_ms, dereg_ms, day,
            toInt64(toUnixTimestamp(toDateTime(day, 'Asia/Shanghai'))) * 1000 AS day_start_ms,
            greatest(least(day_start_ms + 86400000, ifNull(dereg_ms, toInt64({now_ms:Int64})), {now_ms:Int64})
                     - greatest(day_start_ms, delivered_ms), 0) AS in_service_ms
        FROM
        (
            SELECT
                resource_id, provider_id, delivered_ms, dereg_ms,
                arrayJoin(arrayMap(i -> toDate(lo + i), range(toUInt32(greatest(hi - lo + 1, 0))))) AS day
            FROM
            (
                SELECT
                    resource_id, provider_id, delivered_ms, dereg_ms,
                    greatest({from:Date}, toDate(fromUnixTimestamp64Milli(delivered_ms), 'Asia/Shanghai')) AS lo,
                    least({to:Date}, toDate(fromUnixTimestamp64Milli(toInt64({now_ms:Int64})), 'Asia/Shanghai'),
                          ifNull(toDate(fromUnixTimestamp64Milli(dereg_ms), 'Asia/Shanghai'), {to:Date})) AS hi
                FROM life
            )
        )
        WHERE in_service_ms > 0
    ),
    roll AS (
        SELECT resource_id, day, sum(samples) AS samples, sum(late) AS late
        FROM rollup_1d
        WHERE ({provider:String} = '' OR provider_id = {provider:String})
          AND ({resource:String} = '' OR resource_id = {resource:String})
          AND day >= {from:Date} AND day <= {to:Date}
        GROUP BY resource_id, day
    ),
    lat AS (
        SELECT resource_id, day, quantilesTDigestMergeState(0.5, 0.95)(lateness_q) AS q, max(lateness_max) AS lmax
        FROM lateness_1d
        WHERE ({provider:String} = '' OR provider_id = {provider:String})
          AND ({resource:String} = '' OR resource_id = {resource:String})
          AND day >= {from:Date} AND day <= {to:Date}
        GROUP BY resource_id, day
    ),
    dl AS (
        SELECT provider_id, JSONExtractString(payload, 'resource_id') AS resource_id,
               toDate(ingest_ts, 'Asia/Shanghai') AS day, reason
        FROM deadletters FINAL
        WHERE src_topic LIKE 'telemetry.v1%' AND reason != 'duplicate_batch' AND provider_id != ''
          AND ({provider:String} = '' OR provider_id = {provider:String})
          AND ({resource:String} = '' OR resource_id = {resource:String})
          AND toDate(ingest_ts, 'Asia/Shanghai') >= {from:Date} AND toDate(ingest_ts, 'Asia/Shanghai') <= {to:Date}
    ),
    dl_day AS (
        SELECT resource_id, day, count() AS invalid FROM dl WHERE resource_id != '' GROUP BY resource_id, day
    ),
    dl_provider AS (
        SELECT provider_id, count() AS invalid, sumMap(map(reason, toUInt64(1))) AS invalid_by_reason
        FROM dl GROUP BY provider_id
    ),
    accepted_provider AS (
        SELECT provider_id, sum(samples) AS accepted
        FROM rollup_1d
        WHERE ({provider:String} = '' OR provider_id = {provider:String})
          AND ({resource:String} = '' OR resource_id = {resource:String})
          AND day >= {from:Date} AND day <= {to:Date}
        GROUP BY provider_id
    ),
    classified AS (
        SELECT
            d.provider_id AS provider_id, d.resource_id AS resource_id, d.day AS day,
            inv.name AS name, inv.unit_id AS unit_id, inv.district_id AS district_id, inv.interval_s AS interval_s,
            d.in_service_ms AS in_service_ms,
            d.in_service_ms / 1000.0 / inv.interval_s AS expected,
            if(d.day_start_ms + 86400000 > {now_ms:Int64}, greatest(({now_ms:Int64} - d.day_start_ms) / 1000.0, 1.0), 86400.0)
                / if(inv.interval_s = 0, 60, inv.interval_s) AS supervision_expected,
            toFloat64(r.samples) AS got,
            least(got, expected) AS counted,
            r.late AS late,
            l.q AS lateness_q, l.lmax AS lateness_max,
            x.invalid AS invalid,
            d.day >= toDate(fromUnixTimestamp64Milli(d.delivered_ms), 'Asia/Shanghai')
                AND (d.dereg_ms IS NULL OR d.day < toDate(fromUnixTimestamp64Milli(assumeNotNull(d.dereg_ms)), 'Asia/Shanghai'))
                AS billing_day,
            NOT (got < {threshold:Float64} * supervision_expected) AS under_supervision,
            d.day_start_ms + 86400000 <= {now_ms:Int64} AS day_complete
        FROM days AS d
        INNER JOIN inv ON inv.resource_id = d.resource_id
        LEFT JOIN roll AS r ON r.resource_id = d.resource_id AND r.day = d.day
        LEFT JOIN lat AS l ON l.resource_id = d.resource_id AND l.day = d.day
        LEFT JOIN dl_day AS x ON x.resource_id = d.resource_id AND x.day = d.day
    ),
    grouped AS (
        SELECT
            multiIf(grouping(resource_id) = 1, 'provider', grouping(dkey) = 1, 'resource', 'day') AS level,
            provider_id, resource_id, dkey AS day,
            any(name) AS name, any(unit_id) AS unit_id, any(district_id) AS district_id,
            any(interval_s) AS interval_s,
            uniqExact(resource_id) AS resources,
            sum(in_service_ms) AS in_service_ms,
            sum(got) AS samples,
            sum(expected) AS expected,
            sum(counted) AS counted,
            sum(late) AS late,
            quantilesTDigestMerge(0.5, 0.95)(lateness_q) AS lateness,
            max(lateness_max) AS lateness_max,
            sum(invalid) AS invalid_attributed,
            countIf(billing_day) AS billing_days,
            countIf(billing_day AND under_supervision) AS supervised_days,
            countIf(billing_day AND day_complete) AS complete_billing_days,
            countIf(billing_day AND day_complete AND under_supervision) AS complete_supervised_days,
            any(supervision_expected) AS supervision_expected,
            any(billing_day) AS is_billing_day,
            any(under_supervision) AS is_under_supervision,
            any(day_complete) AS is_day_complete
        FROM (SELECT *, if({days:UInt8} = 1, day, toDate(0)) AS dkey FROM classified)
        -- without {days}, the day level collapses into one group per resource (and is dropped below)
        GROUP BY GROUPING SETS ((provider_id), (provider_id, resource_id), (provider_id, resource_id, dkey))
    )
SELECT
    g.level AS level, g.provider_id AS provider_id,
    if(g.level = 'provider', '', g.resource_id) AS resource_id,
    if(g.level = 'day', toString(g.day), '') AS day,
    if(g.level = 'provider', '', g.name) AS name,
    if(g.level = 'provider', '', g.unit_id) AS unit_id,
    if(g.level = 'provider', '', g.district_id) AS district_id,
    if(g.level = 'provider', 0, g.interval_s) AS interval_s,
    g.resources AS resources,
    intDiv(g.in_service_ms, 1000) AS in_service_s,
    g.samples AS samples, g.expected AS expected, g.counted AS counted,
    if(g.expected > 0, 100.0 * g.counted / g.expected, NULL) AS completeness_pct,
    g.late AS late,
    if(isNaN(g.lateness[1]), NULL, toFloat64(g.lateness[1])) AS lateness_p50_s,
    if(isNaN(g.lateness[2]), NULL, toFloat64(g.lateness[2])) AS lateness_p95_s,
    if(isNaN(g.lateness[1]), NULL, toFloat64(g.lateness_max)) AS lateness_max_s,
    if(g.level = 'provider', p.accepted, toUInt64(g.samples)) AS accepted,
    if(g.level = 'provider', dp.invalid, g.invalid_attributed) AS invalid,
    if(accepted + invalid > 0, 100.0 * invalid / (accepted + invalid), NULL) AS invalid_rate_pct,
    if(g.level = 'provider', dp.invalid_by_reason, map()) AS invalid_by_reason,
    g.billing_days AS billing_days, g.supervised_days AS supervised_days,
    g.complete_billing_days AS complete_billing_days, g.complete_supervised_days AS complete_supervised_days,
    if(g.level = 'day', 100.0 * g.samples / g.supervision_expected, NULL) AS supervision_completeness_pct,
    if(g.level = 'day', g.is_billing_day, NULL) AS billing_day,
    if(g.level = 'day' AND g.is_billing_day, g.is_under_supervision, NULL) AS under_supervision,
    if(g.level = 'day', g.is_day_complete, NULL) AS day_complete
FROM grouped AS g
LEFT JOIN dl_provider AS dp ON dp.provider_id = g.provider_id
LEFT JOIN accepted_provider AS p ON p.provider_id = g.provider_id
WHERE g.level != 'day' OR {days:UInt8} = 1
ORDER BY provider_id, level = 'provider' DESC, resource_id, level = 'resource' DESC, day
