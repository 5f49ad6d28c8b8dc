-- Annual evaluation of a unit (§32: 系统安全状况): incidents affecting the unit's resources
-- ({resources}), per severity. Opened, drills (listed apart, never in SLA figures), resolved and SLA
-- breaches (sla_signals, kind sla_breach, raised for a non-drill incident) count what happened on
-- the days [from, to] (Asia/Shanghai; the caller cuts `to` at today); open_now counts the non-drill
-- incidents opened on or before `to` that are still neither resolved nor closed.
WITH
    inc AS (
        SELECT incident_id, severity, drill, state, toDate(opened, 'Asia/Shanghai') AS opened_d, resolved
        FROM incidents FINAL
        WHERE hasAny(resource_ids, {resources:Array(String)}) AND toDate(opened, 'Asia/Shanghai') <= {to:Date}
    ),
    per_sev AS (
        SELECT
            severity,
            countIf(drill = 0 AND opened_d >= {from:Date}) AS n_opened,
            countIf(drill = 1 AND opened_d >= {from:Date}) AS n_drills,
            countIf(drill = 0 AND opened_d >= {from:Date} AND resolved IS NOT NULL) AS n_resolved,
            countIf(drill = 0 AND state NOT IN ('resolved', 'closed')) AS n_open
        FROM inc
        GROUP BY severity
    ),
    br AS (
        SELECT i.severity AS severity, countIf(s.which = 'response') AS n_response, countIf(s.which = 'restore') AS n_restore
        FROM sla_signals AS s FINAL
        INNER JOIN inc AS i ON i.incident_id = s.subject
        WHERE s.kind = 'sla_breach' AND i.drill = 0
          AND toDate(s.at, 'Asia/Shanghai') >= {from:Date} AND toDate(s.at, 'Asia/Shanghai') <= {to:Date}
        GROUP BY i.severity
    )
SELECT
    sev AS severity,
    ifNull(p.n_opened, 0) AS opened, ifNull(p.n_drills, 0) AS drills, ifNull(p.n_resolved, 0) AS resolved,
    ifNull(b.n_response, 0) AS response_breaches, ifNull(b.n_restore, 0) AS restore_breaches,
    ifNull(p.n_open, 0) AS open_now
FROM (SELECT arrayJoin(['P1', 'P2', 'P3', 'P4']) AS sev) AS s
LEFT JOIN per_sev AS p ON p.severity = s.sev
LEFT JOIN br AS b ON b.severity = s.sev
ORDER BY severity
SETTINGS join_use_nulls = 1
