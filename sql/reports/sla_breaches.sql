-- SLA breaches (§33, fee assessment): `sla_breach` signals (response and restore each count) of
-- non-drill incidents of one provider opened in [from, to), per severity of the signal.
-- Parameters: provider (String), from_ms / to_ms (Int64 epoch ms).
SELECT
    severity,
    uniqExact(event_id) AS breaches
FROM sla_signals
WHERE kind = 'sla_breach' AND provider_id = {provider:String}
  AND subject IN (
      SELECT incident_id
      FROM incidents FINAL
      WHERE provider_id = {provider:String} AND drill = 0
        AND opened >= fromUnixTimestamp64Milli({from_ms:Int64}) AND opened < fromUnixTimestamp64Milli({to_ms:Int64})
  )
GROUP BY severity
ORDER BY severity
