-- Incidents (incidents.v1 → these tables) and the SLA signals raised for them (R3, §27, §33).

-- Every accepted incident event, as received. Replacing on (incident, event id): a redelivery
-- or a replay after a crash adds nothing (count with FINAL or uniqExact on the key).
CREATE TABLE IF NOT EXISTS incident_events
(
    incident_id   String,
    event_id      String,
    type          LowCardinality(String),
    ts            DateTime64(3, 'UTC'),
    provider_id   LowCardinality(String),
    severity      LowCardinality(String),
    resource_ids  Array(String),
    drill         UInt8,
    text          String,
    fingerprint   String,
    ingest_ts     DateTime64(3, 'UTC'),
    src_topic     LowCardinality(String),
    src_partition UInt16,
    src_offset    UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (incident_id, event_id);

-- The current state of every incident (latest version wins; version = events applied, so a
-- replay writes the same version). state_json is the worker's full state (streams/incidents.py
-- Incident): Redis is rebuilt from it when its hash of an open incident is gone.
CREATE TABLE IF NOT EXISTS incidents
(
    incident_id         String,
    provider_id         LowCardinality(String),
    severity            LowCardinality(String),
    drill               UInt8,
    state               LowCardinality(String),
    resource_ids        Array(String),
    text                String,
    opened              DateTime64(3, 'UTC'),
    acknowledged        Nullable(DateTime64(3, 'UTC')),
    resolved            Nullable(DateTime64(3, 'UTC')),
    closed              Nullable(DateTime64(3, 'UTC')),
    updated             DateTime64(3, 'UTC'),
    response_target_ms  UInt64,
    restore_target_ms   UInt64,
    state_json          String,
    version             UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY incident_id;

-- SLA near-breaches and breaches as raised (also on events.v1). Replacing on the stable event
-- id: a re-fire after a crash is one row. at = the instant of the signal, fired_ts = when sent.
CREATE TABLE IF NOT EXISTS sla_signals
(
    event_id     String,
    kind         LowCardinality(String),
    subject      String,
    which        LowCardinality(String),
    provider_id  LowCardinality(String),
    severity     LowCardinality(String),
    at           DateTime64(3, 'UTC'),
    fired_ts     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY event_id;
