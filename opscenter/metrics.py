"""Prometheus metrics of the process (served at GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

samples_consumed = Counter(
    "opscenter_samples_consumed_total", "Telemetry samples accepted into the pipeline",
    ["provider"], registry=REGISTRY,
)  # fmt: skip
samples_late = Counter(
    "opscenter_samples_late_total", "Samples that arrived after their live 1-minute window closed",
    ["provider"], registry=REGISTRY,
)  # fmt: skip
messages_consumed = Counter(
    "opscenter_messages_consumed_total", "Kafka messages processed", ["topic"], registry=REGISTRY
)
messages_replayed = Counter(
    "opscenter_messages_replayed_total",
    "Messages skipped because their offset was already stored (replay after a restart)",
    ["topic"], registry=REGISTRY,
)  # fmt: skip
deadlettered = Counter(
    "opscenter_deadlettered_total", "Inputs sent to deadletter.v1", ["provider", "reason"], registry=REGISTRY
)
sink_batches = Counter(
    "opscenter_sink_batches_total", "Batches inserted into ClickHouse", ["table"], registry=REGISTRY
)
sink_rows = Counter("opscenter_sink_rows_total", "Rows inserted into ClickHouse", ["table"], registry=REGISTRY)
sink_errors = Counter(
    "opscenter_sink_errors_total", "Failed ClickHouse inserts (retried)", ["table"], registry=REGISTRY
)
sink_seconds = Histogram(
    "opscenter_sink_batch_seconds", "Time to insert one batch into ClickHouse", ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)  # fmt: skip
sink_lag_seconds = Gauge(
    "opscenter_sink_lag_seconds", "Ingest time minus newest event time in the last inserted batch",
    ["table"], registry=REGISTRY,
)  # fmt: skip
consumer_lag = Gauge(
    "opscenter_consumer_lag_messages", "High watermark minus consumed position", ["topic", "partition"],
    registry=REGISTRY,
)  # fmt: skip
http_ingest = Counter(
    "opscenter_http_ingest_total", "HTTP ingest requests by outcome", ["provider", "status"],
    registry=REGISTRY,
)  # fmt: skip
http_rejected = Counter(
    "opscenter_http_rejected_samples_total", "Samples rejected by HTTP ingest (told to the caller)",
    ["provider", "reason"], registry=REGISTRY,
)  # fmt: skip
live_errors = Counter(
    "opscenter_live_errors_total",
    "Redis writes skipped because Redis was unavailable (live state, notices; rebuilt by later batches)",
    ["op"], registry=REGISTRY,
)  # fmt: skip
dedup_unchecked = Counter(
    "opscenter_batch_dedup_unchecked_total",
    "Telemetry messages accepted without the duplicate-batch check because Redis was unavailable",
    registry=REGISTRY,
)  # fmt: skip
deadletters_dropped = Counter(
    "opscenter_deadletters_dropped_total",
    "deadletter.v1 messages that could not be stored (not a dead letter, or values out of range)",
    ["reason"], registry=REGISTRY,
)  # fmt: skip
registry_size = Gauge("opscenter_registry_resources", "Resources in the registry", registry=REGISTRY)
live_windows = Gauge("opscenter_live_windows_open", "Open live 1-minute windows", registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
