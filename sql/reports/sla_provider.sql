-- Provider service quality (R3, §33) per period and severity: MTTA, MTTR, share within target.
-- Drills are counted in `drills` only and excluded from every other figure. Periods are calendar
-- days / months / quarters / years in Asia/Shanghai, by the incident's opening.
-- A clock counts for "within target" once it is decided: stopped, or its deadline passed by as_of.
-- Parameters: provider (String, '' = all), from_ms / to_ms (Int64 epoch ms, opened in [from, to)),
-- group_by ('day' | 'month' | 'quarter' | 'year'), as_of_ms (Int64 epoch ms: "now").
SELECT
    provider_id,
    multiIf(
        {group_by:String} = 'day', toDate(toTimeZone(opened, 'Asia/Shanghai')),
        {group_by:String} = 'month', toStartOfMonth(toTimeZone(opened, 'Asia/Shanghai')),
        {group_by:String} = 'quarter', toStartOfQuarter(toTimeZone(opened, 'Asia/Shanghai')),
        toStartOfYear(toTimeZone(opened, 'Asia/Shanghai'))
    ) AS period,
    severity,
    countIf(NOT drill) AS incidents,
    countIf(drill) AS drills,
    countIf(NOT drill AND answered IS NOT NULL) AS responded,
    countIf(NOT drill AND resolved IS NOT NULL) AS restored,
    if(responded = 0, NULL, round(avgIf(response_ms, NOT drill AND answered IS NOT NULL) / 1000, 1)) AS mtta_s,
    if(restored = 0, NULL, round(avgIf(restore_ms, NOT drill AND resolved IS NOT NULL) / 1000, 1)) AS mttr_s,
    countIf(NOT drill AND (answered IS NOT NULL OR response_due <= fromUnixTimestamp64Milli({as_of_ms:Int64}))) AS response_decided,
    countIf(NOT drill AND answered IS NOT NULL AND response_ms <= response_target_ms) AS response_within,
    countIf(NOT drill AND (resolved IS NOT NULL OR restore_due <= fromUnixTimestamp64Milli({as_of_ms:Int64}))) AS restore_decided,
    countIf(NOT drill AND resolved IS NOT NULL AND restore_ms <= restore_target_ms) AS restore_within,
    if(response_decided = 0, NULL, round(response_within / response_decided, 4)) AS response_within_share,
    if(restore_decided = 0, NULL, round(restore_within / restore_decided, 4)) AS restore_within_share
FROM
(
    SELECT
        provider_id, severity, drill, opened, resolved, response_target_ms, restore_target_ms,
        coalesce(acknowledged, resolved) AS answered,
        dateDiff('millisecond', opened, answered) AS response_ms,
        dateDiff('millisecond', opened, resolved) AS restore_ms,
        addMilliseconds(opened, response_target_ms) AS response_due,
        addMilliseconds(opened, restore_target_ms) AS restore_due
    FROM incidents FINAL
    WHERE opened >= fromUnixTimestamp64Milli({from_ms:Int64}) AND opened < fromUnixTimestamp64Milli({to_ms:Int64})
      AND ({provider:String} = '' OR provider_id = {provider:String})
)
GROUP BY provider_id, period, severity
ORDER BY provider_id, period, severity
