"""incidents.v1: the wire format of incident events (msgspec structs); documented in docs/sla.md."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Annotated, Literal, get_args

import msgspec

IncidentType = Literal["opened", "acknowledged", "updated", "resolved", "closed"]
Severity = Literal["P1", "P2", "P3", "P4"]
INCIDENT_TYPES: tuple[str, ...] = get_args(IncidentType)
SEVERITIES: tuple[str, ...] = get_args(Severity)

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: a time WITH a zone: msgspec refuses a naive time when decoding (reason ``schema``)
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class IncidentEvent(msgspec.Struct, forbid_unknown_fields=False):
    """incidents.v1: one step of an incident's life, reported by its provider; Kafka key: incident id.

    ``severity`` is required on ``opened`` and may change on ``updated`` (None: unchanged);
    ``drill`` is read from the ``opened`` event only; ``resource_ids`` on ``updated``
    replace the list when not empty; ``text`` is free text (Chinese or English).
    """

    event_id: Id
    incident_id: Id
    type: IncidentType
    ts: AwareTime
    provider_id: Id
    severity: Severity | None = None
    resource_ids: list[str] = []
    drill: bool = False
    text: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    v: int = 1


incident_decoder = msgspec.json.Decoder(IncidentEvent)
_encoder = msgspec.json.Encoder(order="deterministic")


def fingerprint(ev: IncidentEvent) -> str:
    """A short digest of the event's content: a redelivery has the same one, a reused id does not."""
    canonical = msgspec.structs.replace(ev, ts=ev.ts.astimezone(timezone.utc))  # Z and +08:00 alike
    return hashlib.blake2b(_encoder.encode(canonical), digest_size=8).hexdigest()


def encode(ev: IncidentEvent) -> bytes:
    """The event as incidents.v1 JSON."""
    return _encoder.encode(ev)


#: Field descriptions in the shape of ``opscenter.schemas._ENRICH``, ready for the schema
#: generator to adopt incidents.v1 (see docs/sla.md).
SCHEMA_ENRICH: dict[str, tuple[str | None, dict[str, dict[str, object]]]] = {
    "IncidentEvent": (
        (
            "incidents.v1: one step of an incident (故障事件) reported by its provider. Kafka key: "
            "incident id. Invalid steps are dead-lettered as 'invalid_incident'; a redelivery "
            "(same event_id, same content) changes nothing."
        ),
        {
            "event_id": {"description": "Provider-chosen id, unique within the incident."},
            "incident_id": {"description": "Id of the incident (also the Kafka key)."},
            "type": {"enum": list(INCIDENT_TYPES), "description": "The step (see docs/sla.md)."},
            "ts": {"format": "date-time", "description": "When the step happened, with a time zone."},
            "provider_id": {"description": "Provider (云服务商) reporting; must own the incident."},
            "severity": {"description": "P1–P4; required on 'opened', null: unchanged."},
            "resource_ids": {"description": "Affected resources; on 'updated' non-empty replaces."},
            "drill": {"description": "Drill (演练): listed but excluded from SLA; read on 'opened'."},
            "text": {"description": "Free text, at most 4000 characters."},
            "v": {"description": "Format version, 1 for incidents.v1."},
        },
    )
}
