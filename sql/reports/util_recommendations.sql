-- Right-sizing recommendations in their current status (the latest version of each), newest
-- first. Every filter is optional: '' matches anything.
SELECT
    rec_id, resource_id, provider_id, unit_id, district_id, metric, direction, status,
    current_size, target_size, size_unit, p95_pct, target_pct, evidence, proposed_at,
    decided_at, decided_by, reason, applied_at, applied_event_id
FROM recommendations FINAL
WHERE ({rec_id:String} = '' OR rec_id = {rec_id:String})
  AND ({status:String} = '' OR status = {status:String})
  AND ({metric:String} = '' OR metric = {metric:String})
  AND ({direction:String} = '' OR direction = {direction:String})
  AND ({resource_id:String} = '' OR resource_id = {resource_id:String})
  AND ({unit_id:String} = '' OR unit_id = {unit_id:String})
  AND ({district_id:String} = '' OR district_id = {district_id:String})
  AND ({provider_id:String} = '' OR provider_id = {provider_id:String})
ORDER BY proposed_at DESC, rec_id
LIMIT {limit:UInt32}
