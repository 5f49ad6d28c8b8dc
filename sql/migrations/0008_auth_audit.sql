-- People who log in (role and scope per REQUIREMENTS "Who uses it"); argon2 password hashes.
-- Seeded from opscenter/data/users.yaml on first start, maintained through the admin API.
CREATE TABLE IF NOT EXISTS users
(
    username       String,
    display_name   String,
    password_hash  String,
    role           LowCardinality(String),
    scope          String,
    disabled       UInt8 DEFAULT 0,
    updated        DateTime64(3, 'UTC') DEFAULT now64(3),
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY username;

-- R11: who did what, when and from where. Append-only: the product has no route that updates
-- or deletes rows here.
CREATE TABLE IF NOT EXISTS audit_log
(
    ts       DateTime64(3, 'UTC'),
    actor    String,
    role     LowCardinality(String),
    action   LowCardinality(String),
    target   String,
    detail   String,
    ip       String,
    ok       UInt8
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, actor);
