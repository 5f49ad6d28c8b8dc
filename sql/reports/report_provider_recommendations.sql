-- Provider report (§26, §31): right-sizing recommendations for the provider's resources proposed on
-- the days [from, to] (Asia/Shanghai), by direction and current status (their fate).
SELECT direction, status, count() AS recommendations
FROM recommendations FINAL
WHERE provider_id = {provider:String}
  AND toDate(proposed_at, 'Asia/Shanghai') >= {from:Date} AND toDate(proposed_at, 'Asia/Shanghai') <= {to:Date}
GROUP BY direction, status
ORDER BY direction, status
