-- Raw telemetry samples, one row per accepted sample (telemetry.v1).
-- ORDER BY (resource_id, ts): the product reads one resource's recent history, or a time range of it.
-- The src_* columns record the Kafka position each row came from: the ingest sink skips a
-- replayed message whose offset is already stored (see sink_offsets), so a worker killed
-- mid-stream doubles nothing. TTL is set from OPSCENTER_RAW_RETENTION_DAYS at migrate time.
CREATE TABLE IF NOT EXISTS samples
(
    ts            DateTime64(3, 'UTC'),
    resource_id   String,
    provider_id   LowCardinality(String),
    cpu_pct       Float32,
    mem_pct       Float32,
    storage_pct   Float32,
    net_rx_kbps   Nullable(Float32),
    net_tx_kbps   Nullable(Float32),
    late          UInt8,
    ingest_ts     DateTime64(3, 'UTC'),
    batch_id      String,
    src_topic     LowCardinality(String),
    src_partition UInt16,
    src_offset    UInt64
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (resource_id, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- The highest Kafka offset stored per source partition: read when a worker is assigned a
-- partition, so replays after a crash are skipped. Filled by a view on every insert.
CREATE TABLE IF NOT EXISTS sink_offsets
(
    src_topic     LowCardinality(String),
    src_partition UInt16,
    max_offset    SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (src_topic, src_partition)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_offsets_mv TO sink_offsets AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM samples
GROUP BY src_topic, src_partition;
