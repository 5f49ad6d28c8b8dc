-- SLA breaches raised per provider since an instant (the wall's "breaches today"): one row per
-- provider with at least one. sla_signals replaces on the stable event id, so FINAL counts a
-- signal re-fired after a crash once. Drills raise no signals.
-- Parameters: since_ms (Int64 epoch ms), provider (String, '' = all).
SELECT provider_id, count() AS breaches
FROM sla_signals FINAL
WHERE kind = 'sla_breach'
  AND at >= fromUnixTimestamp64Milli({since_ms:Int64})
  AND ({provider:String} = '' OR provider_id = {provider:String})
GROUP BY provider_id
ORDER BY provider_id
