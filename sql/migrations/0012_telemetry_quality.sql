-- Telemetry quality (R4; 管理办法 §17, §34): lateness of accepted samples per resource and
-- Asia/Shanghai calendar day (the day of the sample's event time, like rollup_1d), as a mergeable
-- t-digest of (ingest_ts - ts) in seconds, so p50 / p95 can be read for a resource-day, a resource
-- over a period and a provider over a period from one table. Completeness reads rollup_1d (the
-- same counts the fee assessment reads) and the invalid-sample rate reads deadletters; see
-- docs/telemetry-quality.md and sql/reports/quality_summary.sql.
-- non_replicated_deduplication_window: a deduplicated insert into samples must not double this
-- view's rows either (DESIGN.md, "ClickHouse insert deduplication").
CREATE TABLE IF NOT EXISTS lateness_1d
(
    day          Date,
    provider_id  LowCardinality(String),
    resource_id  String,
    samples      SimpleAggregateFunction(sum, UInt64),
    lateness_max SimpleAggregateFunction(max, Float32),
    lateness_q   AggregateFunction(quantilesTDigest(0.5, 0.95), Float32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYear(day)
ORDER BY (provider_id, resource_id, day)
TTL day + INTERVAL 800 DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- The samples stored before this migration: run once, before the view exists (migrations run
-- at start, before the workers consume; `opscenter migrate` in production, workers stopped).
INSERT INTO lateness_1d (day, provider_id, resource_id, samples, lateness_max, lateness_q)
SELECT
    toDate(ts, 'Asia/Shanghai') AS day, any(provider_id) AS provider_id, resource_id,
    count() AS samples,
    max(toFloat32((toUnixTimestamp64Milli(ingest_ts) - toUnixTimestamp64Milli(ts)) / 1000)) AS lateness_max,
    quantilesTDigestState(0.5, 0.95)(toFloat32((toUnixTimestamp64Milli(ingest_ts) - toUnixTimestamp64Milli(ts)) / 1000))
        AS lateness_q
FROM samples
GROUP BY resource_id, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS lateness_1d_mv TO lateness_1d AS
SELECT
    toDate(ts, 'Asia/Shanghai') AS day, any(provider_id) AS provider_id, resource_id,
    count() AS samples,
    max(toFloat32((toUnixTimestamp64Milli(ingest_ts) - toUnixTimestamp64Milli(ts)) / 1000)) AS lateness_max,
    quantilesTDigestState(0.5, 0.95)(toFloat32((toUnixTimestamp64Milli(ingest_ts) - toUnixTimestamp64Milli(ts)) / 1000))
        AS lateness_q
FROM samples
GROUP BY resource_id, day;

-- Samples per resource and minute, ordered by time: the provider completeness over the last
-- hour behind `telemetry_quality` events (streams/quality.py) reads ~60 × resources rows here,
-- where rollup_1m (ordered by resource) would scan a granule of every resource every minute.
-- Kept 3 days.
CREATE TABLE IF NOT EXISTS recent_counts_1m
(
    minute       DateTime('UTC'),
    provider_id  LowCardinality(String),
    resource_id  String,
    samples      SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (minute, provider_id, resource_id)
TTL minute + INTERVAL 3 DAY
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO recent_counts_1m (minute, provider_id, resource_id, samples)
SELECT toStartOfMinute(ts) AS minute, any(provider_id) AS provider_id, resource_id, count() AS samples
FROM samples
WHERE ts >= now() - INTERVAL 3 DAY
GROUP BY resource_id, minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS recent_counts_1m_mv TO recent_counts_1m AS
SELECT toStartOfMinute(ts) AS minute, any(provider_id) AS provider_id, resource_id, count() AS samples
FROM samples
GROUP BY resource_id, minute;
