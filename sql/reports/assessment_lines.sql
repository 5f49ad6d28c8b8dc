-- Fee assessment of one provider for the days [from, to] (both inclusive, Asia/Shanghai calendar
-- days; the caller cuts `to` at today): one row per run of contiguous days of one resource with the
-- same status, price version, resource class, spec and judgement (R5; §12, §34, §35). Read by
-- dashboard/billing_assessment.py; money is computed from these quantities in opscenter/fees.py
-- (Decimal, rounded once per line) with the unit prices of each version_id from
-- assessment_prices.sql. docs/billing.md has the rules:
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
--
-- How (fast: no resource-day is expanded; docs/billing.md "Performance"): the days of a resource are
-- intervals cut where something changes: its spec or class (lifecycle), the price version or a
-- provider-wide judgement of its class's calendar, "today", its own judgements, and its telemetry,
-- which is read once per resource as a sorted array of rollup days. A day is looked at alone only
-- when its sample count is not exactly the expected one ("odd") or it is today; a stretch of days
-- with exactly the expected count, or with no rollup row at all, stays one interval. Per resource
-- (one row of arrays) the cuts are swept in day order into elementary intervals, each classified
-- once, and neighbours with the same key are merged into runs. The same rules as the day-by-day
-- form, which tests/integration/assessment_lines_reference.sql keeps: test_assessment_equivalence.py
-- compares both on a random provider-year.
WITH
    -- lifecycle: billing days, spec and class in force -----------------------------------------
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
    inv AS (
        SELECT resource_id, argMax(name, version) AS name, argMax(unit_id, version) AS unit_id,
               greatest(argMax(interval_s, version), 1) AS interval_s
        FROM inventory
        GROUP BY resource_id
    ),
    -- pieces: the billing days of a resource, cut wherever its spec or its class changes (days
    -- before its first spec are not billed)
    pieces AS (
        SELECT
            p.resource_id AS resource_id, p.vcpu AS vcpu, p.mem_gb AS mem_gb, p.storage_gb AS storage_gb,
            p.resource_class AS resource_class,
            greatest(p.cut, life.start_d, {from:Date}) AS piece_lo,
            least(ifNull(p.next_cut, {to:Date} + 1), ifNull(life.end_d, {to:Date} + 1), {to:Date} + 1) AS piece_hi
        FROM
        (
            SELECT
                c.resource_id AS resource_id, c.cut AS cut,
                leadInFrame(toNullable(c.cut)) OVER (
                    PARTITION BY c.resource_id ORDER BY c.cut ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING
                ) AS next_cut,
                s.vcpu AS vcpu, s.mem_gb AS mem_gb, s.storage_gb AS storage_gb,
                if(k.resource_class = '', 'standard', k.resource_class) AS resource_class
            FROM
            (
                SELECT DISTINCT resource_id, cut
                FROM (SELECT resource_id, spec_from AS cut FROM spec UNION ALL SELECT resource_id, class_from AS cut FROM cls)
            ) AS c
            ASOF INNER JOIN spec AS s ON s.resource_id = c.resource_id AND c.cut >= s.spec_from
            ASOF LEFT JOIN cls AS k ON k.resource_id = c.resource_id AND c.cut >= k.class_from
        ) AS p
        INNER JOIN life ON life.resource_id = p.resource_id
        WHERE piece_lo < piece_hi
    ),
    -- price list and provider-wide judgements: one calendar per class ------------------------------
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
            v.created_at AS created_at
        FROM price_versions AS v
        INNER JOIN starts AS s ON s.resource_class = v.resource_class AND s.valid_from = v.valid_from
        WHERE v.valid_from <= {to:Date} AND (eff_to IS NULL OR eff_to > {from:Date})
    ),
    cal AS (
        SELECT arrayJoin(arrayMap(i -> toDate({from:Date} + i), range(toUInt32({to:Date} - {from:Date} + 1)))) AS day
    ),
    price_day AS (
        SELECT resource_class, day, argMax(version_id, tuple(created_at, version_id)) AS version_id
        FROM cal
        CROSS JOIN pv
        WHERE cal.day >= pv.valid_from AND (pv.eff_to IS NULL OR cal.day < pv.eff_to)
        GROUP BY resource_class, day
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
    -- the judgement covering a day, per resource id ('' = every resource of the provider): the lowest id
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
    -- each class's calendar of [from, to] in runs of days with the same price version ('' = none),
    -- the same provider-wide judgement ('' = none), and today apart
    calendar AS (
        SELECT resource_class, version_id, all_jid, min(day) AS cal_lo, max(day) + 1 AS cal_hi
        FROM
        (
            SELECT
                c.resource_class AS resource_class, cal.day AS day, pd.version_id AS version_id,
                ja.judgement_id AS all_jid, cal.day = {today:Date} AS is_today,
                toRelativeDayNum(cal.day) - row_number() OVER (
                    PARTITION BY c.resource_class, version_id, all_jid, is_today ORDER BY cal.day
                ) AS run
            FROM
            (
                SELECT DISTINCT resource_class
                FROM (SELECT 'standard' AS resource_class UNION ALL SELECT resource_class FROM price_versions
                      UNION ALL SELECT resource_class FROM cls)
            ) AS c
            CROSS JOIN cal
            LEFT JOIN price_day AS pd ON pd.resource_class = c.resource_class AND pd.day = cal.day
            LEFT JOIN (SELECT day, judgement_id FROM judged_days WHERE resource_id = '') AS ja ON ja.day = cal.day
        )
        GROUP BY resource_class, version_id, all_jid, is_today, run
    ),
    -- priced pieces: spec, class, price version and provider-wide judgement constant inside
    pp AS (
        SELECT
            p.resource_id AS resource_id, greatest(p.piece_lo, k.cal_lo) AS pp_lo, least(p.piece_hi, k.cal_hi) AS pp_hi,
            (p.vcpu, p.mem_gb, p.storage_gb, p.resource_class, k.version_id, k.all_jid) AS a
        FROM pieces AS p
        INNER JOIN calendar AS k ON k.resource_class = p.resource_class
        WHERE k.cal_lo < p.piece_hi AND k.cal_hi > p.piece_lo
    ),
    -- runs of days a resource's own judgement covers
    own_runs AS (
        SELECT resource_id, judgement_id, min(day) AS j_lo, max(day) + 1 AS j_hi
        FROM
        (
            SELECT resource_id, day, judgement_id,
                   toRelativeDayNum(day) - row_number() OVER (PARTITION BY resource_id, judgement_id ORDER BY day) AS run
            FROM judged_days
            WHERE resource_id != ''
        )
        GROUP BY resource_id, judgement_id, run
    ),
    -- telemetry: per resource, its rollup days in order (parts not merged yet summed) turned into the
    -- days where its state changes: (day, 1) samples exactly as expected from here on, (day, 2, samples)
    -- an odd day or today, (day, 3) no rollup row from here on ------------------------------------
    tele AS (
        SELECT
            t.resource_id AS resource_id,
            arrayMap((d, n) -> d != n, t.sd, arrayPushBack(arrayPopFront(t.sd), toDate(0))) AS last_of_day,
            arrayFilter((d, l) -> l, t.sd, last_of_day) AS ds,
            arrayFilter((c, l) -> l, arrayCumSum(t.ss), last_of_day) AS cs,
            arrayMap((c, p) -> toFloat64(c - p), cs, arrayPushFront(arrayPopBack(cs), 0)) AS gs,
            if(inv.interval_s = 0, 60, inv.interval_s) AS iv,
            arrayMap((d, g) -> d = {today:Date} OR g != if(d = {today:Date}, {today_s:Float64}, 86400.0) / iv, ds, gs)
                AS odd,
            arrayDifference(arrayMap(d -> toInt32(toRelativeDayNum(d)), ds)) AS gap,
            arrayConcat(
                -- an odd day; the first day of a stretch of rollup days; a plain day after an odd one
                arrayFilter(
                    e -> e.4,
                    arrayMap((d, g, o, k, po) -> (d, if(o, 2, 1), if(o, g, 0.0), o OR k != 1 OR po),
                             ds, gs, odd, gap, arrayPushFront(arrayPopBack(odd), 0))
                ),
                -- the day after the last day of a stretch
                arrayMap(d -> (d + 1, 3, 0.0, 1), arrayFilter((d, k) -> k != 1, ds, arrayPushBack(arrayPopFront(gap), 0)))
            ) AS t_events
        FROM
        (
            SELECT resource_id, arraySort(groupArray(day)) AS sd,
                   arraySort((s, d) -> d, groupArray(toUInt64(samples)), groupArray(day)) AS ss
            FROM rollup_1d
            WHERE provider_id = {provider:String} AND day >= {from:Date} AND day <= {to:Date}
            GROUP BY resource_id
        ) AS t
        LEFT JOIN inv ON inv.resource_id = t.resource_id
    ),
    -- per resource: one row of arrays -----------------------------------------------------------
    per_resource AS (
        SELECT
            p.resource_id AS resource_id, inv.name AS name, inv.unit_id AS unit_id,
            if(inv.interval_s = 0, 60, inv.interval_s) AS iv, p.p_lo AS p_lo, p.p_hi AS p_hi, p.p_attr AS p_attr,
            o.j_lo AS j_lo, o.j_hi AS j_hi, o.j_id AS j_id, t.t_events AS t_events
        FROM
        (
            SELECT resource_id, arrayMap(x -> x.1, ps) AS p_lo, arrayMap(x -> x.2, ps) AS p_hi,
                   arrayMap(x -> x.3, ps) AS p_attr
            FROM (SELECT resource_id, arraySort(groupArray((pp_lo, pp_hi, a))) AS ps FROM pp GROUP BY resource_id)
        ) AS p
        LEFT JOIN
        (
            SELECT resource_id, groupArray(j_lo) AS j_lo, groupArray(j_hi) AS j_hi, groupArray(judgement_id) AS j_id
            FROM own_runs
            GROUP BY resource_id
        ) AS o ON o.resource_id = p.resource_id
        LEFT JOIN tele AS t ON t.resource_id = p.resource_id
        LEFT JOIN inv ON inv.resource_id = p.resource_id
    ),
    -- every change along a resource's days as (day, begin 1 / end 0, category, piece index, own
    -- judgement, telemetry kind, samples): category 0 a priced piece, 1 its own judgement, 2 its
    -- telemetry. In day order (an end before a begin on one day) the state of each category is carried
    -- forward (arrayFill) and taken after the last change of a day: elementary intervals [e_lo, e_hi)
    -- inside which nothing changes; those outside every piece are dropped. Values are carried, never
    -- looked up by index inside a lambda: a captured array is copied for every element.
    swept AS (
        SELECT
            resource_id, name, unit_id, iv, p_attr,
            arraySort(arrayConcat(
                arrayMap((x, i) -> (x, 1, 0, i, '', 0, 0.0), p_lo, arrayEnumerate(p_lo)),
                arrayMap(x -> (x, 0, 0, 0, '', 0, 0.0), p_hi),
                arrayMap((x, j) -> (x, 1, 1, 0, j, 0, 0.0), j_lo, j_id),
                arrayMap(x -> (x, 0, 1, 0, '', 0, 0.0), j_hi),
                arrayMap(e -> (e.1, 0, 2, 0, '', e.2, e.3), t_events)
            )) AS evs,
            arrayMap(e -> e.3, evs) AS cats,
            arrayMap(e -> e.1, evs) AS xs,
            arrayMap((x, n) -> x != n, xs, arrayPushBack(arrayPopFront(xs), toDate(0))) AS keep,
            arrayFilter((x, k) -> k, xs, keep) AS lo_all,
            arrayFilter((x, k) -> k, arrayFill((v, c) -> c = 0, arrayMap(e -> e.4, evs), cats), keep) AS p_all,
            arrayFilter((x, p) -> p > 0, lo_all, p_all) AS e_lo,
            arrayFilter((x, p) -> p > 0, arrayPushBack(arrayPopFront(lo_all), toDate(0)), p_all) AS e_hi,
            arrayFilter(
                (x, p) -> p > 0, arrayFilter((x, k) -> k, arrayFill((v, c) -> c = 1, arrayMap(e -> e.5, evs), cats), keep),
                p_all
            ) AS e_own,
            arrayFilter(
                (x, p) -> p > 0,
                arrayFilter((x, k) -> k, arrayFill((v, c) -> c = 2, arrayMap(e -> (e.6, e.7), evs), cats), keep),
                p_all
            ) AS e_tel,
            arrayFilter(p -> p > 0, p_all) AS e_p
        FROM per_resource
    ),
    classified AS (
        SELECT
            resource_id, name, unit_id, e_lo, e_hi,
            -- each piece's attributes repeated for its elementary intervals (e_p runs 1, 1, 2, 3, 3, ...)
            arrayFlatten(arrayMap(
                (a, n) -> arrayResize([a], n, a),
                p_attr,
                arrayMap(x -> length(x), arraySplit((p, f) -> f, e_p,
                                                    arrayMap((p, q) -> p != q, e_p, arrayPushFront(arrayPopBack(e_p), 0))))
            )) AS e_attr,
            arrayMap(lo -> if(lo = {today:Date}, {today_s:Float64}, 86400.0) / iv, e_lo) AS e_exp,
            -- samples per day: an odd day its own, a plain day exactly the expected count, no rollup row 0
            arrayMap((t, ex) -> multiIf(t.1 = 2, t.2, t.1 = 1, ex, 0.0), e_tel, e_exp) AS e_got,
            arrayMap((a, j) -> if(j != '', j, a.6), e_attr, e_own) AS e_jid,
            arrayMap(
                (a, j, g, ex) -> multiIf(j != '', 'unqualified', g < {threshold:Float64} * ex, 'unsupervised',
                                         a.5 = '', 'no_price', 'billable'),
                e_attr, e_jid, e_got, e_exp
            ) AS e_status,
            arrayMap((a, st, j) -> (st, a.1, a.2, a.3, a.4, a.5, j), e_attr, e_status, e_jid) AS e_key,
            -- a run starts where the key changes or the days are not contiguous
            arrayMap(
                (i, k, pk, lo, ph) -> i = 1 OR k != pk OR lo != ph,
                arrayEnumerate(e_key), e_key, arrayPushFront(arrayPopBack(e_key), e_key[1]), e_lo,
                arrayPushFront(arrayPopBack(e_hi), toDate(0))
            ) AS starts_run
        FROM swept
    ),
    runs AS (
        SELECT
            resource_id, name, unit_id,
            arrayFilter((x, s) -> s, e_key, starts_run) AS r_key,
            arrayFilter((x, s) -> s, e_lo, starts_run) AS r_first,
            arrayFilter((x, s) -> s, e_hi, arrayPushBack(arrayPopFront(starts_run), 1)) AS r_end,
            arrayMap(x -> arraySum(x), arraySplit(
                (x, s) -> s, arrayMap((lo, hi, g, ex) -> (hi - lo) * least(g, ex), e_lo, e_hi, e_got, e_exp), starts_run
            )) AS r_counted,
            arrayMap(x -> arraySum(x), arraySplit(
                (x, s) -> s, arrayMap((lo, hi, ex) -> (hi - lo) * ex, e_lo, e_hi, e_exp), starts_run
            )) AS r_expected,
            arrayMap(x -> arrayMin(x), arraySplit((x, s) -> s, arrayMap((g, ex) -> g / ex, e_got, e_exp), starts_run))
                AS r_min
        FROM classified
    )
SELECT
    resource_id, name, unit_id, rk.1 AS status, rk.6 AS version_id, rk.5 AS resource_class, rk.2 AS vcpu,
    rk.3 AS mem_gb, rk.4 AS storage_gb, rk.7 AS judgement_id, j.reason AS judgement_reason,
    first AS first_day, end_ - 1 AS last_day, toUInt64(end_ - first) AS days,
    counted AS samples_counted, expected AS samples_expected, least_completeness AS min_completeness
FROM runs
ARRAY JOIN r_key AS rk, r_first AS first, r_end AS end_, r_counted AS counted, r_expected AS expected,
           r_min AS least_completeness
LEFT JOIN judged AS j ON j.judgement_id = rk.7
ORDER BY resource_id, first_day
