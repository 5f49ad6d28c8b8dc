-- Provider report (§17, §26): the provider's rejected inputs ingested on the days [from, to]
-- (Asia/Shanghai), by reason; a dead letter stored twice is counted once (its source position).
SELECT reason, uniqExact(src_topic, src_partition, src_offset, idx) AS rejected
FROM deadletters
WHERE provider_id = {provider:String}
  AND toDate(ingest_ts, 'Asia/Shanghai') >= {from:Date} AND toDate(ingest_ts, 'Asia/Shanghai') <= {to:Date}
GROUP BY reason
ORDER BY reason
