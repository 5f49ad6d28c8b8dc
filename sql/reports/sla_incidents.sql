-- Incidents opened in [from, to) per provider, drills included (they are listed, not counted):
-- the fault-rate numerator and the provider-wide MTTA / MTTR of streams/sla_figures.py
-- (docs/sla.md). answered = acknowledged, or resolved when that came first (as in sla_provider.sql).
-- Parameters: provider (String, '' = all), from_ms / to_ms (Int64 epoch ms).
SELECT
    provider_id,
    incident_id,
    severity,
    drill,
    toUnixTimestamp64Milli(opened) AS opened_ms,
    if(answered IS NULL, NULL, toUnixTimestamp64Milli(assumeNotNull(answered))) AS answered_ms,
    if(resolved IS NULL, NULL, toUnixTimestamp64Milli(assumeNotNull(resolved))) AS resolved_ms
FROM
(
    SELECT provider_id, incident_id, severity, drill, opened, resolved, coalesce(acknowledged, resolved) AS answered
    FROM incidents FINAL
    WHERE opened >= fromUnixTimestamp64Milli({from_ms:Int64}) AND opened < fromUnixTimestamp64Milli({to_ms:Int64})
      AND ({provider:String} = '' OR provider_id = {provider:String})
)
ORDER BY provider_id, opened_ms, incident_id
