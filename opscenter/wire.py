"""Versioned wire formats of every topic (msgspec structs); documented in docs/wire-formats.md."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

TOPIC_TELEMETRY = "telemetry.v1"
TOPIC_LIFECYCLE = "lifecycle.v1"
TOPIC_INCIDENTS = "incidents.v1"
TOPIC_DECLARATIONS = "declarations.v1"
TOPIC_EVENTS = "events.v1"
TOPIC_DEADLETTER = "deadletter.v1"
ALL_TOPICS = (
    TOPIC_TELEMETRY,
    TOPIC_LIFECYCLE,
    TOPIC_INCIDENTS,
    TOPIC_DECLARATIONS,
    TOPIC_EVENTS,
    TOPIC_DEADLETTER,
)
#: topics holding one record per key that matters (compacted on real Kafka)
COMPACTED_TOPICS = (TOPIC_LIFECYCLE,)


class Sample(msgspec.Struct, forbid_unknown_fields=False):
    """One resource's utilization at one instant (percentages in [0, 100])."""

    resource_id: str
    ts: datetime
    cpu_pct: float
    mem_pct: float
    storage_pct: float
    net_rx_kbps: float | None = None
    net_tx_kbps: float | None = None


class TelemetryBatch(msgspec.Struct):
    """telemetry.v1: a batch of samples from one provider (Kafka key: ``provider/shard``)."""

    provider_id: str
    batch_id: str
    samples: list[Sample]
    v: int = 1


class Spec(msgspec.Struct):
    vcpu: int
    mem_gb: int
    storage_gb: int


LifecycleType = Literal[
    "applied",
    "accepted",
    "refused",
    "baseline_passed",
    "baseline_failed",
    "delivered",
    "acceptance_passed",
    "adjusted",
    "deregistration_requested",
    "deregistered",
]


class LifecycleEvent(msgspec.Struct):
    """lifecycle.v1: one step of a resource's life (§19–§21); Kafka key: resource id."""

    event_id: str
    resource_id: str
    type: LifecycleType
    ts: datetime
    provider_id: str
    unit_id: str = ""
    district_id: str = ""
    name: str = ""
    spec: Spec | None = None
    interval_s: int = 60
    # price class (计费类别): lowercase letters, digits, _ and -; "" = unchanged (a new resource: "standard")
    resource_class: Annotated[str, msgspec.Meta(pattern=r"^([a-z0-9][a-z0-9_-]{0,39})?$")] = ""
    v: int = 1


class DeadLetterSource(msgspec.Struct):
    topic: str
    partition: int
    offset: int


class DeadLetter(msgspec.Struct):
    """deadletter.v1: a rejected input, its reason and where it came from."""

    reason: str
    detail: str
    source: DeadLetterSource
    provider_id: str
    payload: str  # the original payload (a sample as JSON, or the whole message)
    ingest_ts: datetime
    batch_id: str = ""
    index: int = 0  # n-th rejected input of the source message
    v: int = 1


class Event(msgspec.Struct, omit_defaults=True):
    """events.v1: something the product noticed (band change, SLA breach, nodata, …).

    Consumed by the alert agent and the live feed. ``kind`` names the event type (see
    docs/wire-formats.md); ``labels`` carry provider/unit/district/resource/severity for
    routing; ``data`` carries the kind-specific figures. Kafka key: the subject
    (resource id, incident id, …), so one subject's events stay in order.
    """

    event_id: str  # stable: a redelivery or a replay produces the same id
    kind: str
    ts: datetime
    subject: str
    provider_id: str = ""
    unit_id: str = ""
    district_id: str = ""
    resource_id: str = ""
    severity: str = ""
    data: dict[str, object] = {}
    v: int = 1


# Reasons a sample or message is dead-lettered; machine-readable, stable.
REASONS = (
    "unparseable",  # not JSON / not UTF-8
    "schema",  # missing field, wrong type
    "too_large",  # more samples than allowed in one batch
    "out_of_range",  # a percentage outside [0, 100], a negative rate, NaN
    "future_timestamp",  # more than max_future_s ahead of ingest time
    "too_old",  # older than the raw retention
    "unregistered_resource",  # §34: not under supervision
    "foreign_resource",  # resource belongs to another provider
    "deregistered_resource",  # telemetry after deregistration (§21)
    "duplicate_batch",  # the same batch id again from the same provider
    "invalid_lifecycle",  # a lifecycle event that does not fit the resource's state
    "invalid_incident",  # an incident event that does not fit the incident's state (streams/incidents.py)
    "invalid_declaration",  # a unit's peak/trough declaration that fails validation (streams/declarations.py)
)

json_encoder = msgspec.json.Encoder()
telemetry_decoder = msgspec.json.Decoder(TelemetryBatch)
lifecycle_decoder = msgspec.json.Decoder(LifecycleEvent)
deadletter_decoder = msgspec.json.Decoder(DeadLetter)
event_decoder = msgspec.json.Decoder(Event)

TELEMETRY_SHARDS = 16


def shard_key(provider_id: str, resource_id: str) -> bytes:
    """Kafka key of a telemetry batch: ``provider/shard``; a resource always maps to one shard.

    A provider groups its samples by shard before producing, so every sample of one resource
    lands on one partition (its live window lives in one worker).
    """
    import zlib

    return f"{provider_id}/{zlib.crc32(resource_id.encode()) % TELEMETRY_SHARDS}".encode()
