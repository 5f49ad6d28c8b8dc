-- Resources in service per provider (R3 fault rate and availability, docs/sla.md): from the first
-- `delivered` to the first `deregistered` lifecycle event (end_ms NULL: still in service), for
-- every resource whose time in service overlaps [from, to). Read by streams/sla_figures.py.
-- Parameters: provider (String, '' = all), from_ms / to_ms (Int64 epoch ms).
SELECT
    owner AS provider_id,
    resource_id,
    toUnixTimestamp64Milli(start) AS start_ms,
    if(stop IS NULL, NULL, toUnixTimestamp64Milli(assumeNotNull(stop))) AS end_ms
FROM
(
    SELECT
        resource_id,
        argMin(provider_id, ts) AS owner,
        minIf(ts, type = 'delivered') AS start,
        minIf(toNullable(ts), type = 'deregistered') AS stop,
        countIf(type = 'delivered') AS deliveries
    FROM lifecycle_events FINAL
    WHERE {provider:String} = '' OR provider_id = {provider:String}
    GROUP BY resource_id
)
WHERE deliveries > 0
  AND start < fromUnixTimestamp64Milli({to_ms:Int64})
  AND (stop IS NULL OR stop > fromUnixTimestamp64Milli({from_ms:Int64}))
ORDER BY provider_id, resource_id
