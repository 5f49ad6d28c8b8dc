-- Machine credentials (bearer tokens), stored as SHA-256 hex of the token, never in clear.
-- Tokens are long random strings, so a fast hash is right here (argon2 is for passwords).
-- role: provider (telemetry and incident ingest for its own resources), kiosk, …; scope: the
-- provider/unit/district id the token is limited to. Revocation writes a newer version.
CREATE TABLE IF NOT EXISTS api_tokens
(
    token_sha256  String,
    name          String,
    role          LowCardinality(String),
    scope         String,
    created       DateTime64(3, 'UTC') DEFAULT now64(3),
    revoked       UInt8 DEFAULT 0,
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY token_sha256;
