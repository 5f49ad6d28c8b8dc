-- Billing (R5; 管理办法 §6, §12, §14, §33–§35): the billing standard, the bureau's judgements of
-- unqualified service, and the SLA results of a settlement period. Every table is append-only:
-- the product has no route that updates or deletes a row; a change is a new row (and an entry in
-- audit_log). docs/billing.md explains how the assessment reads them.

-- Price-list versions (计费标准, §6), maintained by the Finance Bureau. Prices are yuan per day
-- per vCPU / GB memory / GB storage. A version is in force from valid_from (inclusive) to
-- valid_to (exclusive); an open valid_to (NULL) runs until the next version of the same class
-- starts. A correction (correction = 1, with a reason) may start in the past and, where it
-- overlaps older versions, wins over them (the latest created wins); the older rows stay.
CREATE TABLE IF NOT EXISTS price_versions
(
    version_id      String,
    resource_class  LowCardinality(String),
    valid_from      Date,
    valid_to        Nullable(Date),
    vcpu_day        Decimal(18, 4),
    mem_gb_day      Decimal(18, 4),
    storage_gb_day  Decimal(18, 4),
    correction      UInt8,
    reason          String,
    created_by      String,
    created_at      DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (resource_class, valid_from, created_at, version_id);

-- The bureau's judgements that a service was unqualified (不合格的云服务, §34): the resource's days
-- in [from_day, to_day] (both inclusive, Asia/Shanghai calendar days) are excluded from billing.
-- resource_id '' = every resource of the provider. A withdrawal is a second row with the same
-- judgement_id and action = 'withdraw'.
CREATE TABLE IF NOT EXISTS service_judgements
(
    judgement_id  String,
    action        LowCardinality(String),
    provider_id   LowCardinality(String),
    resource_id   String,
    from_day      Date,
    to_day        Date,
    reason        String,
    actor         String,
    ts            DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (provider_id, judgement_id, ts);

-- A provider's SLA results for a settlement period (§33), the input of the quality deduction.
-- Entered by the bureau until the SLA issue computes them; the newest row for exactly
-- (provider, period_from, period_to) is the one used. NULL = figure not known.
CREATE TABLE IF NOT EXISTS sla_results
(
    provider_id        LowCardinality(String),
    period_from        Date,
    period_to          Date,
    availability_pct   Nullable(Float64),
    within_target_pct  Nullable(Float64),
    breaches_p1        Nullable(UInt32),
    breaches_p2        Nullable(UInt32),
    breaches_p3        Nullable(UInt32),
    breaches_p4        Nullable(UInt32),
    satisfaction       Nullable(Float64),
    completeness_pct   Nullable(Float64),
    source             String,
    entered_by         String,
    ts                 DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (provider_id, period_from, period_to, ts);
