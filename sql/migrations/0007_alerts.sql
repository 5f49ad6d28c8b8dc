-- Alerts (R9): every transition of every alert, every notification delivery outcome (incl.
-- dead letters), and the audit of silences and assurance periods (who, when, why).
-- Replacing keys make a re-sent record (an outbox replay after a crash) one row after merges.
CREATE TABLE IF NOT EXISTS alert_transitions
(
    alert_id     String,
    fingerprint  String,
    rule         LowCardinality(String),
    seq          UInt32,
    from_state   LowCardinality(String),
    to_state     LowCardinality(String),
    at           DateTime64(3, 'UTC'),
    actor        String,
    reason       String,
    severity     LowCardinality(String),
    provider_id  LowCardinality(String),
    unit_id      LowCardinality(String),
    district_id  LowCardinality(String),
    resource_id  String,
    subject      String,
    labels       Map(String, String),
    summary_zh   String,
    summary_en   String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (alert_id, seq);

CREATE TABLE IF NOT EXISTS alert_deliveries
(
    notice_id  String,
    receiver   LowCardinality(String),
    channel    LowCardinality(String),
    target     String,
    status     LowCardinality(String),
    tries      UInt16,
    error      String,
    at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (notice_id, channel, target);

CREATE TABLE IF NOT EXISTS alert_silences
(
    id          String,
    matchers    Array(String),
    starts_at   DateTime64(3, 'UTC'),
    ends_at     DateTime64(3, 'UTC'),
    created_by  String,
    comment     String,
    created_at  DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC'),
    updated_by  String
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id;

CREATE TABLE IF NOT EXISTS assurance_periods
(
    id          String,
    name_zh     String,
    name_en     String,
    kind        LowCardinality(String),
    starts_at   DateTime64(3, 'UTC'),
    ends_at     DateTime64(3, 'UTC'),
    deleted     UInt8,
    updated_at  DateTime64(3, 'UTC'),
    updated_by  String
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id;
