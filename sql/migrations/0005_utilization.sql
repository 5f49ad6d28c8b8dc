-- Utilization governance (§29–§31): declared peak / trough periods and right-sizing
-- recommendations with every decision. Rolling windows are computed from the rollups by
-- sql/reports/util_window_*.sql and need no table of their own.

-- A unit's declared business peak or trough periods (§30), from declarations.v1 and
-- POST /api/v1/declarations. The latest version per declaration id wins (a unit may revise or
-- withdraw a declaration); read with FINAL. Recurring periods are in local time (UTC+8).
CREATE TABLE IF NOT EXISTS declarations
(
    declaration_id  String,
    unit_id         LowCardinality(String),
    kind            LowCardinality(String),
    recurrence      LowCardinality(String),
    resource_ids    Array(String),
    starts_at       Nullable(DateTime64(3, 'UTC')),
    ends_at         Nullable(DateTime64(3, 'UTC')),
    weekdays        Array(UInt8),
    month_days      Array(UInt8),
    time_from       String,
    time_to         String,
    valid_from      Nullable(Date),
    valid_until     Nullable(Date),
    note            String,
    declared_by     String,
    ts              DateTime64(3, 'UTC'),
    withdrawn       UInt8,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY declaration_id;

-- Right-sizing recommendations (§31): the latest version per id is its current status
-- (proposed → approved / rejected → applied); read with FINAL.
CREATE TABLE IF NOT EXISTS recommendations
(
    rec_id            String,
    resource_id       String,
    provider_id       LowCardinality(String),
    unit_id           LowCardinality(String),
    district_id       LowCardinality(String),
    metric            LowCardinality(String),
    direction         LowCardinality(String),
    status            LowCardinality(String),
    current_size      UInt32,
    target_size       UInt32,
    size_unit         LowCardinality(String),
    p95_pct           Float64,
    target_pct        Float64,
    evidence          String,
    proposed_at       DateTime64(3, 'UTC'),
    decided_at        Nullable(DateTime64(3, 'UTC')),
    decided_by        String,
    reason            String,
    applied_at        Nullable(DateTime64(3, 'UTC')),
    applied_event_id  String,
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY rec_id;

-- Every step of every recommendation, with who and when (R11): proposed by the system,
-- approved / rejected by a bureau officer, applied by the provider's adjustment. One row per
-- (recommendation, action): a retried write adds nothing. Never updated by the product.
CREATE TABLE IF NOT EXISTS recommendation_log
(
    rec_id       String,
    action       LowCardinality(String),
    actor        String,
    reason       String,
    ts           DateTime64(3, 'UTC'),
    status_from  LowCardinality(String),
    status_to    LowCardinality(String),
    detail       String
)
ENGINE = ReplacingMergeTree
ORDER BY (rec_id, action);
