-- Rollups of samples at 1 minute, 1 hour and 1 day, each fed by a materialized view on
-- every insert into samples (late samples included: the stored rollups are complete).
-- Mean = sum / samples. p95 per minute is exact (quantileExactInclusive, = numpy's linear
-- interpolation); hourly and daily p95 use mergeable t-digests (approximate, bounded memory).
-- Every target has non_replicated_deduplication_window: a deduplicated insert into samples
-- must not double the rollups either.
CREATE TABLE IF NOT EXISTS rollup_1m
(
    minute       DateTime('UTC'),
    resource_id  String,
    provider_id  LowCardinality(String),
    samples      SimpleAggregateFunction(sum, UInt64),
    cpu_sum      SimpleAggregateFunction(sum, Float64),
    cpu_max      SimpleAggregateFunction(max, Float32),
    cpu_q        AggregateFunction(quantileExactInclusive(0.95), Float32),
    mem_sum      SimpleAggregateFunction(sum, Float64),
    mem_max      SimpleAggregateFunction(max, Float32),
    mem_q        AggregateFunction(quantileExactInclusive(0.95), Float32),
    storage_sum  SimpleAggregateFunction(sum, Float64),
    storage_max  SimpleAggregateFunction(max, Float32),
    storage_q    AggregateFunction(quantileExactInclusive(0.95), Float32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (resource_id, minute, provider_id)
TTL minute + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_1m_mv TO rollup_1m AS
SELECT
    toStartOfMinute(ts) AS minute, resource_id, any(provider_id) AS provider_id,
    count() AS samples,
    sum(cpu_pct) AS cpu_sum, max(cpu_pct) AS cpu_max, quantileExactInclusiveState(0.95)(cpu_pct) AS cpu_q,
    sum(mem_pct) AS mem_sum, max(mem_pct) AS mem_max, quantileExactInclusiveState(0.95)(mem_pct) AS mem_q,
    sum(storage_pct) AS storage_sum, max(storage_pct) AS storage_max,
    quantileExactInclusiveState(0.95)(storage_pct) AS storage_q
FROM samples
GROUP BY resource_id, minute;

CREATE TABLE IF NOT EXISTS rollup_1h
(
    hour         DateTime('UTC'),
    resource_id  String,
    provider_id  LowCardinality(String),
    samples      SimpleAggregateFunction(sum, UInt64),
    cpu_sum      SimpleAggregateFunction(sum, Float64),
    cpu_max      SimpleAggregateFunction(max, Float32),
    cpu_q        AggregateFunction(quantileTDigest(0.95), Float32),
    mem_sum      SimpleAggregateFunction(sum, Float64),
    mem_max      SimpleAggregateFunction(max, Float32),
    mem_q        AggregateFunction(quantileTDigest(0.95), Float32),
    storage_sum  SimpleAggregateFunction(sum, Float64),
    storage_max  SimpleAggregateFunction(max, Float32),
    storage_q    AggregateFunction(quantileTDigest(0.95), Float32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (resource_id, hour, provider_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_1h_mv TO rollup_1h AS
SELECT
    toStartOfHour(ts) AS hour, resource_id, any(provider_id) AS provider_id,
    count() AS samples,
    sum(cpu_pct) AS cpu_sum, max(cpu_pct) AS cpu_max, quantileTDigestState(0.95)(cpu_pct) AS cpu_q,
    sum(mem_pct) AS mem_sum, max(mem_pct) AS mem_max, quantileTDigestState(0.95)(mem_pct) AS mem_q,
    sum(storage_pct) AS storage_sum, max(storage_pct) AS storage_max,
    quantileTDigestState(0.95)(storage_pct) AS storage_q
FROM samples
GROUP BY resource_id, hour;

-- Daily rollup: ORDER BY provider first, for per-provider reports and the fee assessment.
-- Days are UTC+8 (Asia/Shanghai) calendar days: the settlement is by the local calendar.
CREATE TABLE IF NOT EXISTS rollup_1d
(
    day          Date,
    provider_id  LowCardinality(String),
    resource_id  String,
    samples      SimpleAggregateFunction(sum, UInt64),
    late         SimpleAggregateFunction(sum, UInt64),
    cpu_sum      SimpleAggregateFunction(sum, Float64),
    cpu_max      SimpleAggregateFunction(max, Float32),
    cpu_q        AggregateFunction(quantileTDigest(0.95), Float32),
    mem_sum      SimpleAggregateFunction(sum, Float64),
    mem_max      SimpleAggregateFunction(max, Float32),
    mem_q        AggregateFunction(quantileTDigest(0.95), Float32),
    storage_sum  SimpleAggregateFunction(sum, Float64),
    storage_max  SimpleAggregateFunction(max, Float32),
    storage_q    AggregateFunction(quantileTDigest(0.95), Float32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYear(day)
ORDER BY (provider_id, resource_id, day)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_1d_mv TO rollup_1d AS
SELECT
    toDate(ts, 'Asia/Shanghai') AS day, any(provider_id) AS provider_id, resource_id,
    count() AS samples, sum(late) AS late,
    sum(cpu_pct) AS cpu_sum, max(cpu_pct) AS cpu_max, quantileTDigestState(0.95)(cpu_pct) AS cpu_q,
    sum(mem_pct) AS mem_sum, max(mem_pct) AS mem_max, quantileTDigestState(0.95)(mem_pct) AS mem_q,
    sum(storage_pct) AS storage_sum, max(storage_pct) AS storage_max,
    quantileTDigestState(0.95)(storage_pct) AS storage_q
FROM samples
GROUP BY resource_id, day;
