-- Down intervals (R3 availability, docs/sla.md): every resource listed in a non-drill incident of
-- severity P1 or P2 is down from the incident's opening to its resolution (resolved_ms NULL: not
-- resolved yet); the incident's current severity and resource list count. Incidents whose
-- interval overlaps [from, to). Overlaps on one resource are merged in streams/sla_figures.py.
-- Parameters: provider (String, '' = all), from_ms / to_ms (Int64 epoch ms).
SELECT
    provider_id,
    incident_id,
    arrayJoin(resource_ids) AS resource_id,
    toUnixTimestamp64Milli(opened) AS opened_ms,
    if(resolved IS NULL, NULL, toUnixTimestamp64Milli(assumeNotNull(resolved))) AS resolved_ms
FROM incidents FINAL
WHERE drill = 0 AND severity IN ('P1', 'P2')
  AND ({provider:String} = '' OR provider_id = {provider:String})
  AND opened < fromUnixTimestamp64Milli({to_ms:Int64})
  AND (resolved IS NULL OR resolved > fromUnixTimestamp64Milli({from_ms:Int64}))
ORDER BY provider_id, resource_id, opened_ms
