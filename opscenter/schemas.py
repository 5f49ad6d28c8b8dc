"""JSON Schemas (draft 2020-12) of the wire formats, generated from the msgspec structs.

``msgspec.json.schema`` gives the shape (fields, types, required, defaults); this module adds
what the code enforces on values (percentages in [0, 100], rates >= 0, time zones required,
the reason and lifecycle-type enums) and a description of every field. The generated files
are committed under ``docs/schemas/`` and documented in ``docs/wire-formats.md``; a unit test
keeps them equal to :func:`json_schemas`. After changing a struct in :mod:`opscenter.wire` or
:mod:`opscenter.wire_incidents`::

    python -m opscenter.schemas
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, get_args

import msgspec

from opscenter import wire_incidents
from opscenter.wire import (
    REASONS,
    TELEMETRY_SHARDS,
    TOPIC_DEADLETTER,
    TOPIC_INCIDENTS,
    TOPIC_LIFECYCLE,
    TOPIC_TELEMETRY,
    DeadLetter,
    LifecycleEvent,
    LifecycleType,
    TelemetryBatch,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = "urn:weihai-opscenter:schema:"
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"

#: RFC 3339 date-time WITH an offset, as msgspec decodes it (``T``, ``t`` or a space between
#: date and time; ``Z``, ``z``, ``+08:00`` or ``+0800``). A time without a zone is rejected.
TS_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$"


def _ts(what: str, note: str) -> dict[str, Any]:
    return {
        "format": "date-time",
        "pattern": TS_PATTERN,
        "description": (
            f"{what}: RFC 3339 date-time with a time zone (required), e.g. "
            f"2026-11-24T16:00:00+08:00 or 2026-11-24T08:00:00Z. {note}"
        ),
    }


def _pct(what: str) -> dict[str, Any]:
    return {
        "minimum": 0,
        "maximum": 100,
        "description": f"{what} in percent, 0–100 inclusive; outside → reason 'out_of_range'.",
    }


def _rate(what: str) -> dict[str, Any]:
    return {
        "minimum": 0,
        "description": (
            f"{what} in kbit/s (kilobits per second), a finite number >= 0, or null / absent "
            "when not measured; negative → reason 'out_of_range'."
        )
    }


_LIFECYCLE_TYPES = list(get_args(LifecycleType))

# Per $defs entry: the definition's description (None: keep the docstring) and per-property
# additions. Every property of every definition must be listed (a test checks descriptions).
_ENRICH: dict[str, tuple[str | None, dict[str, dict[str, Any]]]] = {
    "TelemetryBatch": (
        "telemetry.v1: a batch of utilization samples from one provider (云服务商). Kafka key: "
        f"'<provider_id>/<shard>', shard = crc32(resource_id) % {TELEMETRY_SHARDS}; all samples of "
        "a batch share one shard. Bad samples are dead-lettered one by one, the good ones kept.",
        {
            "provider_id": {"description": "Id of the cloud provider (云服务商) sending the batch."},
            "batch_id": {
                "description": (
                    "Provider-chosen id, unique per provider (kept 7 days): the same id again "
                    "from the same provider is dead-lettered as 'duplicate_batch'."
                )
            },
            "samples": {
                "description": (
                    "The samples; at most ingest_max_samples (default 5000), else the whole "
                    "message is dead-lettered as 'too_large'."
                )
            },
            "v": {"description": "Format version, 1 for telemetry.v1."},
        },
    ),
    "Sample": (
        "One resource's utilization at one instant (监控样本).",
        {
            "resource_id": {
                "description": (
                    "Id of a registered resource of this provider in a state that accepts "
                    "telemetry (see lifecycle.v1)."
                )
            },
            "ts": _ts(
                "Measurement time",
                "Without a time zone the sample is rejected with reason 'schema'; more than "
                "max_future_s (default 300 s) ahead → 'future_timestamp'; older than the raw "
                "retention (default 90 days) → 'too_old'.",
            ),
            "cpu_pct": _pct("CPU utilization (CPU 使用率)"),
            "mem_pct": _pct("Memory utilization (内存使用率)"),
            "storage_pct": _pct("Storage utilization (存储使用率)"),
            "net_rx_kbps": _rate("Network receive rate"),
            "net_tx_kbps": _rate("Network transmit rate"),
        },
    ),
    "LifecycleEvent": (
        "lifecycle.v1: one step of a resource's life (资源生命周期, §19–§21). Kafka key: resource "
        "id. Applied in order per resource; a step that does not fit the resource's state is "
        "dead-lettered as 'invalid_lifecycle'. Redeliveries (same event_id) change nothing.",
        {
            "event_id": {"description": "Unique id of the event; a repeated id is ignored."},
            "resource_id": {"description": "Id of the resource (also the Kafka key)."},
            "type": {
                "enum": _LIFECYCLE_TYPES,
                "description": (
                    "The step; the resource's state becomes this value. Allowed steps per state: "
                    "docs/wire-formats.md."
                ),
            },
            "ts": _ts(
                "When the step happened",
                "Required by this contract; the registry stage does not check it yet and would "
                "read a time without a zone as the worker's local time.",
            ),
            "provider_id": {
                "description": "Provider (云服务商) owning the resource; cannot change later."
            },
            "unit_id": {"description": "Using unit (使用单位); empty: unchanged."},
            "district_id": {"description": "District (区市) of the unit; empty: unchanged."},
            "name": {"description": "Display name; empty: unchanged (a new resource: its id)."},
            "spec": {
                "description": (
                    "Resource specification; required on the first event of a resource, "
                    "null: unchanged."
                )
            },
            "interval_s": {
                "description": "Expected sampling interval in seconds (taken from the first event)."
            },
            "resource_class": {
                "description": (
                    "Price class (计费类别) of the resource from this event on: lowercase letters, "
                    "digits, '_' and '-', at most 40; the billing standard prices each class "
                    "(docs/billing.md). Optional: empty or absent = unchanged, a new resource "
                    "starts as 'standard'. Anything else → reason 'schema'."
                )
            },
            "v": {"description": "Format version, 1 for lifecycle.v1."},
        },
    ),
    "Spec": (
        "Resource specification (资源规格).",
        {
            "vcpu": {"description": "Virtual CPUs."},
            "mem_gb": {"description": "Memory in GB."},
            "storage_gb": {"description": "Storage in GB."},
        },
    ),
    "DeadLetter": (
        "deadletter.v1: a rejected input (死信), its reason and where it came from. Kafka key: "
        "provider id, '-' when unknown.",
        {
            "reason": {"enum": list(REASONS), "description": "Machine-readable, stable reason."},
            "detail": {"maxLength": 500, "description": "Human-readable detail (cut at 500)."},
            "source": {"description": "Kafka position of the rejected message."},
            "provider_id": {"description": "Provider of the rejected input; empty when unknown."},
            "payload": {
                "description": (
                    "The rejected input: one sample as JSON, or the whole message; a payload "
                    "that is not UTF-8 is written as 'base64:' + its base64."
                )
            },
            "ingest_ts": _ts("When the input was rejected", "Written in UTC ('Z')."),
            "batch_id": {"description": "batch_id of the rejected message; empty when unknown."},
            "index": {
                "minimum": 0,
                "description": "n-th (from 0) rejected input of the same source message.",
            },
            "v": {"description": "Format version, 1 for deadletter.v1."},
        },
    ),
    "DeadLetterSource": (
        "Where a rejected input was read.",
        {
            "topic": {"description": "Source topic (telemetry.v1 or lifecycle.v1)."},
            "partition": {"minimum": 0, "description": "Source partition."},
            "offset": {"minimum": 0, "description": "Source offset."},
        },
    ),
}

# incidents.v1 (opscenter/wire_incidents.py keeps the field descriptions next to its struct); the
# time gets the same zone-requiring pattern as the other topics
_INCIDENT_DESCRIPTION, _INCIDENT_FIELDS = wire_incidents.SCHEMA_ENRICH["IncidentEvent"]
_ENRICH["IncidentEvent"] = (
    _INCIDENT_DESCRIPTION + " The step's rules (state machine, SLA clocks): docs/sla.md.",
    {
        **_INCIDENT_FIELDS,
        "ts": _ts(
            "When the step happened",
            "Without a time zone the message is dead-lettered as 'schema'; more than "
            "max_future_s (default 300 s) ahead of the ingest time → 'invalid_incident' "
            "(future_timestamp); before the incident's previous milestone → 'invalid_incident' "
            "(ts_before_previous).",
        ),
    },
)

_TOPICS: dict[str, tuple[type[msgspec.Struct], str]] = {
    TOPIC_TELEMETRY: (TelemetryBatch, "Telemetry batch"),
    TOPIC_LIFECYCLE: (LifecycleEvent, "Lifecycle event"),
    TOPIC_DEADLETTER: (DeadLetter, "Dead letter"),
    TOPIC_INCIDENTS: (wire_incidents.IncidentEvent, "Incident event"),
}


def _enrich_property(prop: dict[str, Any], extra: dict[str, Any]) -> None:
    """Merge ``extra`` into ``prop``; value constraints go into the non-null branch of anyOf."""
    extra = dict(extra)
    if "description" in extra:
        prop["description"] = extra.pop("description")
    if not extra:
        return
    target = prop
    if "anyOf" in prop:  # optional value: constrain the number/string branch, not null
        branches = [b for b in prop["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot place {extra} into {prop}")
        target = branches[0]
    if "enum" in extra:
        target.pop("type", None)
    target.update(extra)


def _schema(struct: type[msgspec.Struct], topic: str, title: str) -> dict[str, Any]:
    generated = copy.deepcopy(msgspec.json.schema(struct))
    for name, definition in generated["$defs"].items():
        if name not in _ENRICH:
            raise KeyError(f"opscenter.schemas: no descriptions for struct {name!r}")
        description, props = _ENRICH[name]
        if description:
            definition["description"] = description
        unknown = set(props) - set(definition["properties"])
        if unknown:
            raise KeyError(f"opscenter.schemas: {name} has no fields {sorted(unknown)}")
        for field, extra in props.items():
            _enrich_property(definition["properties"][field], extra)
    root_def = generated["$defs"][struct.__name__]
    return {
        "$schema": DRAFT,
        "$id": f"{ID_PREFIX}{topic}",
        "title": f"{topic}: {title}",
        "description": root_def["description"] + " See docs/wire-formats.md.",
        **generated,
    }


def json_schemas() -> dict[str, dict]:
    """Topic name → JSON Schema (draft 2020-12) of its messages."""
    return {topic: _schema(struct, topic, title) for topic, (struct, title) in _TOPICS.items()}


def dumps(schema: dict) -> str:
    """The committed text of one schema: pretty, sorted keys, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_path(directory: str | Path, topic: str) -> Path:
    return Path(directory) / f"{topic}.schema.json"


def write_schemas(directory: str | Path = SCHEMA_DIR) -> list[Path]:
    """Write ``<directory>/<topic>.schema.json`` for every topic; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for topic, schema in json_schemas().items():
        path = schema_path(directory, topic)
        path.write_text(dumps(schema), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_schemas(sys.argv[1] if len(sys.argv) > 1 else SCHEMA_DIR):
        print(p)
