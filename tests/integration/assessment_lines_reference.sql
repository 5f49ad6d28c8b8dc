-- REFERENCE COPY (tests only): sql/reports/assessment_lines.sql as it was before it was made fast (issue #9
-- item 4, issue #7). It expands every resource-day and finds runs with a window function: slow (about 2 s
-- for 5,000 resources x 1 year) but plainly the rules of docs/billing.md. test_assessment_equivalence.py
-- runs it beside the product query on a random provider-year and requires identical runs. Do not edit.
--
-- Fee assessment of one provider for the days [from, to] (both inclusive, Asia/Shanghai calendar
-- days; the caller cuts `to` at today): one row per run of contiguous days of one resource with the
-- same status, price version, resource class and spec (R5; §12, §34, §35). Read by
-- dashboard/billing_assessment.py; money is computed from these quantities in opscenter/fees.py
-- (Decimal, rounded once per line). docs/billing.md has the rules:
--   * billing days: from the local day of `delivered` (inclusive) to the local day of
--     `deregistered` (exclusive), within [from, to];
--   * spec in force on a day: the last spec-carrying lifecycle event on or before that day;
--   * resource class in force on a day: the last class-carrying lifecycle event on or before that
--     day ('standard' before any); the class chooses the price list;
--   * price in force on a day: the version of the resource's class covering it (open valid_to =
--     until the next version of the class starts); where corrections overlap, the latest created wins;
--   * status of a day: unqualified (a bureau judgement covers it) > unsupervised (completeness =
--     rollup_1d.samples / (86400 / interval_s) below the threshold; the day `today` expects only
--     the samples of its first `today_s` seconds, it is not over yet) > no_price > billable.
WITH
    ev AS (
        SELECT resource_id, type, ts, toDate(ts, 'Asia/Shanghai') AS d, vcpu AS ev_vcpu, mem_gb AS ev_mem,
               storage_gb AS ev_storage, resource_class AS ev_class
        FROM lifecycle_events FINAL
        WHERE provider_id = {provider:String}
    ),
    life AS (
        SELECT
            resource_id,
            minIf(d, type = 'delivered') AS start_d,
            minIf(toNullable(d), type = 'deregistered') AS end_d
        FROM ev
        GROUP BY resource_id
        HAVING countIf(type = 'delivered') > 0
    ),
    spec AS (
        SELECT
            resource_id, d AS spec_from,
            argMax(assumeNotNull(ev_vcpu), ts) AS vcpu,
            argMax(assumeNotNull(ev_mem), ts) AS mem_gb,
            argMax(assumeNotNull(ev_storage), ts) AS storage_gb
        FROM ev
        WHERE ev_vcpu IS NOT NULL AND ev_mem IS NOT NULL AND ev_storage IS NOT NULL
        GROUP BY resource_id, d
    ),
    cls AS (
        SELECT resource_id, d AS class_from, argMax(ev_class, ts) AS resource_class
        FROM ev
        WHERE ev_class != ''
        GROUP BY resource_id, d
    ),
    seg AS (
        SELECT
            resource_id, spec_from, vcpu, mem_gb, storage_gb,
            leadInFrame(toNullable(spec_from)) OVER (
                PARTITION BY resource_id ORDER BY spec_from ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING
            ) AS spec_to
        FROM spec
    ),
    inv AS (
        SELECT resource_id, argMax(name, version) AS name, argMax(unit_id, version) AS unit_id,
               greatest(argMax(interval_s, version), 1) AS interval_s
        FROM inventory
        GROUP BY resource_id
    ),
    days AS (
        SELECT
            resource_id, vcpu, mem_gb, storage_gb,
            arrayJoin(arrayMap(i -> toDate(lo + i), range(toUInt32(greatest(hi - lo, 0))))) AS day
        FROM
        (
            SELECT
                seg.resource_id AS resource_id, seg.vcpu AS vcpu, seg.mem_gb AS mem_gb,
                seg.storage_gb AS storage_gb,
                greatest(seg.spec_from, life.start_d, {from:Date}) AS lo,
                least(ifNull(seg.spec_to, {to:Date} + 1), ifNull(life.end_d, {to:Date} + 1), {to:Date} + 1) AS hi
            FROM seg
            INNER JOIN life ON life.resource_id = seg.resource_id
        )
    ),
    days_c AS (
        SELECT d.resource_id AS resource_id, d.vcpu AS vcpu, d.mem_gb AS mem_gb, d.storage_gb AS storage_gb,
               d.day AS day, if(c.resource_class = '', 'standard', c.resource_class) AS resource_class
        FROM days AS d
        ASOF LEFT JOIN cls AS c ON c.resource_id = d.resource_id AND d.day >= c.class_from
    ),
    roll AS (
        SELECT resource_id, day, sum(samples) AS samples
        FROM rollup_1d
        WHERE provider_id = {provider:String} AND day >= {from:Date} AND day <= {to:Date}
        GROUP BY resource_id, day
    ),
    judged AS (
        SELECT
            judgement_id,
            argMinIf(resource_id, ts, action = 'judge') AS resource_id,
            argMinIf(from_day, ts, action = 'judge') AS from_day,
            argMinIf(to_day, ts, action = 'judge') AS to_day,
            argMinIf(reason, ts, action = 'judge') AS reason
        FROM service_judgements
        WHERE provider_id = {provider:String}
        GROUP BY judgement_id
        HAVING countIf(action = 'judge') > 0 AND countIf(action = 'withdraw') = 0
    ),
    judged_days AS (
        SELECT resource_id, day, min(judgement_id) AS judgement_id
        FROM
        (
            SELECT
                resource_id, judgement_id,
                arrayJoin(arrayMap(i -> toDate(lo + i), range(toUInt32(greatest(hi - lo, 0))))) AS day
            FROM
            (
                SELECT resource_id, judgement_id, greatest(from_day, {from:Date}) AS lo,
                       least(to_day, {to:Date}) + 1 AS hi
                FROM judged
            )
        )
        GROUP BY resource_id, day
    ),
    starts AS (
        SELECT
            resource_class, valid_from,
            leadInFrame(toNullable(valid_from)) OVER (
                PARTITION BY resource_class ORDER BY valid_from ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING
            ) AS next_from
        FROM (SELECT DISTINCT resource_class, valid_from FROM price_versions)
    ),
    pv AS (
        SELECT
            v.version_id AS version_id, v.resource_class AS resource_class, v.valid_from AS valid_from,
            if(v.valid_to IS NULL, s.next_from, v.valid_to) AS eff_to,
            v.created_at AS created_at, v.vcpu_day AS vcpu_day, v.mem_gb_day AS mem_gb_day,
            v.storage_gb_day AS storage_gb_day
        FROM price_versions AS v
        INNER JOIN starts AS s ON s.resource_class = v.resource_class AND s.valid_from = v.valid_from
        WHERE v.valid_from <= {to:Date} AND (eff_to IS NULL OR eff_to > {from:Date})
    ),
    price_day AS (
        SELECT
            resource_class, day,
            argMax(tuple(version_id, vcpu_day, mem_gb_day, storage_gb_day), tuple(created_at, version_id)) AS p
        FROM
        (
            SELECT arrayJoin(arrayMap(i -> toDate({from:Date} + i), range(toUInt32({to:Date} - {from:Date} + 1)))) AS day
        ) AS cal
        CROSS JOIN pv
        WHERE cal.day >= pv.valid_from AND (pv.eff_to IS NULL OR cal.day < pv.eff_to)
        GROUP BY resource_class, day
    ),
    classified AS (
        SELECT
            d.resource_id AS resource_id, d.day AS day, d.vcpu AS vcpu, d.mem_gb AS mem_gb,
            d.storage_gb AS storage_gb, d.resource_class AS resource_class, inv.name AS name, inv.unit_id AS unit_id,
            if(d.day = {today:Date}, {today_s:Float64}, 86400.0) / if(inv.interval_s = 0, 60, inv.interval_s) AS expected,
            toFloat64(r.samples) AS got,
            if(jr.judgement_id != '', jr.judgement_id, ja.judgement_id) AS judgement_id,
            pd.p.1 AS version_id, pd.p.2 AS vcpu_day, pd.p.3 AS mem_gb_day, pd.p.4 AS storage_gb_day,
            multiIf(
                judgement_id != '', 'unqualified',
                got < {threshold:Float64} * expected, 'unsupervised',
                version_id = '', 'no_price',
                'billable'
            ) AS status
        FROM days_c AS d
        LEFT JOIN inv ON inv.resource_id = d.resource_id
        LEFT JOIN roll AS r ON r.resource_id = d.resource_id AND r.day = d.day
        LEFT JOIN judged_days AS jr ON jr.resource_id = d.resource_id AND jr.day = d.day
        LEFT JOIN (SELECT day, judgement_id FROM judged_days WHERE resource_id = '') AS ja ON ja.day = d.day
        LEFT JOIN price_day AS pd ON pd.resource_class = d.resource_class AND pd.day = d.day
    ),
    runs AS (
        SELECT
            resource_id, any(name) AS name, any(unit_id) AS unit_id, status, version_id, resource_class,
            vcpu, mem_gb, storage_gb,
            any(vcpu_day) AS vcpu_day, any(mem_gb_day) AS mem_gb_day, any(storage_gb_day) AS storage_gb_day,
            judgement_id,
            min(day) AS first_day,
            max(day) AS last_day,
            count() AS days,
            sum(least(got, expected)) AS samples_counted,
            sum(expected) AS samples_expected,
            min(got / expected) AS min_completeness
        FROM
        (
            SELECT
                *,
                toRelativeDayNum(day) - row_number() OVER (
                    PARTITION BY resource_id, status, version_id, resource_class, vcpu, mem_gb, storage_gb, judgement_id
                    ORDER BY day
                ) AS run
            FROM classified
        )
        GROUP BY resource_id, status, version_id, resource_class, vcpu, mem_gb, storage_gb, judgement_id, run
    )
SELECT
    runs.resource_id AS resource_id, runs.name AS name, runs.unit_id AS unit_id, runs.status AS status,
    runs.version_id AS version_id, runs.resource_class AS resource_class, runs.vcpu AS vcpu,
    runs.mem_gb AS mem_gb, runs.storage_gb AS storage_gb,
    runs.vcpu_day AS vcpu_day, runs.mem_gb_day AS mem_gb_day, runs.storage_gb_day AS storage_gb_day,
    runs.judgement_id AS judgement_id, j.reason AS judgement_reason,
    runs.first_day AS first_day, runs.last_day AS last_day, runs.days AS days,
    runs.samples_counted AS samples_counted, runs.samples_expected AS samples_expected,
    runs.min_completeness AS min_completeness
FROM runs
LEFT JOIN judged AS j ON j.judgement_id = runs.judgement_id
ORDER BY resource_id, first_day
