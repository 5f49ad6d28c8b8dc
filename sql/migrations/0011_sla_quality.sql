-- Provider service quality (R3, §33): satisfaction ratings of the using units (云使用单位).
-- Fault rate and availability are computed from incidents and lifecycle_events (docs/sla.md).

-- One rating per unit and incident (subject 'incident:<id>') or per unit, provider and month
-- (subject 'month:YYYY-MM'). A second rating of the same subject replaces the first: the
-- highest version (the rating time in ns) wins; read with FINAL. month = 'YYYY-MM' of a month
-- rating ('' for an incident rating); day = the day the rating is counted on in the SLA figures:
-- the first day of the rated month, or the local day (Asia/Shanghai) of the incident's opening.
-- drill = the rated incident is a drill (fixed when it opens): kept, excluded from every figure.
CREATE TABLE IF NOT EXISTS ratings
(
    unit_id      LowCardinality(String),
    provider_id  LowCardinality(String),
    subject      String,
    incident_id  String,
    month        String,
    day          Date,
    drill        UInt8,
    score        UInt8,
    comment      String,
    rated_by     String,
    ts           DateTime64(3, 'UTC'),
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (provider_id, unit_id, subject);
