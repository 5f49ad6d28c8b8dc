-- Satisfaction ratings (§33) per provider and day, the latest rating of each subject only (FINAL),
-- ratings of drill incidents left out. A month rating counts on the first day of its month, an
-- incident rating on the local day of the incident's opening (sql/migrations/0011_sla_quality.sql).
-- Parameters: provider (String, '' = all), from_day / to_day (Date, Asia/Shanghai, to exclusive).
SELECT
    provider_id,
    day,
    sum(score) AS score_sum,
    count() AS ratings
FROM ratings FINAL
WHERE drill = 0 AND day >= {from_day:Date} AND day < {to_day:Date}
  AND ({provider:String} = '' OR provider_id = {provider:String})
GROUP BY provider_id, day
ORDER BY provider_id, day
