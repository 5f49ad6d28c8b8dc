-- Provider report (§26, §27, §33): incidents opened on the days [from, to] (Asia/Shanghai), per
-- severity: opened, drills (listed, not counted in SLA figures), resolved, mean response and restore
-- minutes (non-drill), and SLA breaches raised in the period (sla_signals, kind sla_breach).
WITH
    inc AS (
        SELECT severity, drill, opened, acknowledged, resolved
        FROM incidents FINAL
        WHERE provider_id = {provider:String}
          AND toDate(opened, 'Asia/Shanghai') >= {from:Date} AND toDate(opened, 'Asia/Shanghai') <= {to:Date}
    ),
    per_sev AS (
        SELECT
            severity,
            countIf(drill = 0) AS n_opened,
            countIf(drill = 1) AS n_drills,
            countIf(drill = 0 AND resolved IS NOT NULL) AS n_resolved,
            round(avgIf(dateDiff('second', opened, acknowledged) / 60, drill = 0 AND acknowledged IS NOT NULL), 1)
                AS response_min,
            round(avgIf(dateDiff('second', opened, resolved) / 60, drill = 0 AND resolved IS NOT NULL), 1) AS restore_min
        FROM inc
        GROUP BY severity
    ),
    br AS (
        SELECT severity, countIf(which = 'response') AS n_response, countIf(which = 'restore') AS n_restore
        FROM sla_signals FINAL
        WHERE provider_id = {provider:String} AND kind = 'sla_breach'
          AND toDate(at, 'Asia/Shanghai') >= {from:Date} AND toDate(at, 'Asia/Shanghai') <= {to:Date}
        GROUP BY severity
    )
SELECT
    sev AS severity,
    ifNull(p.n_opened, 0) AS opened, ifNull(p.n_drills, 0) AS drills, ifNull(p.n_resolved, 0) AS resolved,
    p.response_min AS response_min, p.restore_min AS restore_min,
    ifNull(b.n_response, 0) AS response_breaches, ifNull(b.n_restore, 0) AS restore_breaches
FROM (SELECT arrayJoin(['P1', 'P2', 'P3', 'P4']) AS sev) AS s
LEFT JOIN per_sev AS p ON p.severity = s.sev
LEFT JOIN br AS b ON b.severity = s.sev
ORDER BY severity
SETTINGS join_use_nulls = 1
