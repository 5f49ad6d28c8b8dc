-- Rejected inputs with their reason and source position (deadletter.v1 → this table).
-- ReplacingMergeTree on the source position: a dead letter produced twice (a replay after a
-- crash) is one row after merges; count with FINAL or uniqExact on the key.
CREATE TABLE IF NOT EXISTS deadletters
(
    ingest_ts     DateTime64(3, 'UTC'),
    reason        LowCardinality(String),
    detail        String,
    provider_id   LowCardinality(String),
    batch_id      String,
    payload       String,
    src_topic     LowCardinality(String),
    src_partition UInt16,
    src_offset    UInt64,
    idx           UInt32
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ingest_ts)
ORDER BY (src_topic, src_partition, src_offset, idx)
TTL toDateTime(ingest_ts) + INTERVAL 400 DAY;

-- The resource registry (latest row per resource wins), built from lifecycle.v1.
CREATE TABLE IF NOT EXISTS inventory
(
    resource_id   String,
    provider_id   LowCardinality(String),
    unit_id       LowCardinality(String),
    district_id   LowCardinality(String),
    name          String,
    vcpu          UInt32,
    mem_gb        UInt32,
    storage_gb    UInt32,
    state         LowCardinality(String),
    interval_s    UInt32,
    updated       DateTime64(3, 'UTC'),
    delivered     Nullable(DateTime64(3, 'UTC')),
    deregistered  Nullable(DateTime64(3, 'UTC')),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY resource_id;

-- Every lifecycle event as received (§19–§21): the billing days and the bureau's decision
-- deadlines are computed from this log. Replacing on the event id: a redelivery adds nothing.
CREATE TABLE IF NOT EXISTS lifecycle_events
(
    event_id     String,
    resource_id  String,
    type         LowCardinality(String),
    ts           DateTime64(3, 'UTC'),
    provider_id  LowCardinality(String),
    unit_id      LowCardinality(String),
    district_id  LowCardinality(String),
    vcpu         Nullable(UInt32),
    mem_gb       Nullable(UInt32),
    storage_gb   Nullable(UInt32)
)
ENGINE = ReplacingMergeTree
ORDER BY (resource_id, ts, event_id);

-- Organisations of the city: providers, units, districts (names shown on screens).
CREATE TABLE IF NOT EXISTS orgs
(
    kind     LowCardinality(String),
    org_id   String,
    name_zh  String,
    name_en  String,
    parent   String,
    version  UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (kind, org_id);
