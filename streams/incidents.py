"""The incident state machine (incidents.v1 → current state); pure: no I/O, time passed in.

States: ``open`` → ``acknowledged`` → ``resolved`` → ``closed``; ``open`` may go straight to
``resolved`` (a resolution also answers the response clock); ``updated`` keeps the state and
may change severity, affected resources and text. Each event is judged against the incident's
current state and yields :class:`Applied`, :class:`Duplicate` (the same event delivered again:
changes nothing) or :class:`Invalid` (dead-lettered as ``invalid_incident`` with ``code``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Literal

import msgspec

from opscenter.wire_incidents import IncidentEvent, fingerprint

State = Literal["open", "acknowledged", "resolved", "closed"]
ACTIVE_STATES: frozenset[str] = frozenset({"open", "acknowledged"})

#: the steps allowed from each state (None: the incident does not exist yet)
ALLOWED: dict[str | None, frozenset[str]] = {
    None: frozenset({"opened"}),
    "open": frozenset({"acknowledged", "updated", "resolved"}),
    "acknowledged": frozenset({"updated", "resolved"}),
    "resolved": frozenset({"updated", "closed"}),
    "closed": frozenset(),
}
#: codes of Invalid (the first word of a dead letter's detail)
CODES = (
    "not_opened",  # an event for an incident nobody opened
    "already_opened",  # "opened" for an incident that exists
    "foreign_incident",  # the incident belongs to another provider
    "duplicate_event_id",  # an event id already used in this incident, with other content
    "bad_transition",  # a step not allowed from the current state
    "missing_severity",  # "opened" without a severity
    "ts_before_previous",  # a time before the previous milestone (opened, acknowledged, resolved)
    "future_timestamp",  # a time too far ahead of the ingest time
    "foreign_resource",  # an affected resource belongs to another provider
)


class Incident(msgspec.Struct, frozen=True, kw_only=True):
    """The current state of one incident (times in epoch milliseconds, UTC)."""

    incident_id: str
    provider_id: str
    severity: str
    drill: bool
    state: str
    opened_ms: int
    updated_ms: int  # time of the latest step
    acknowledged_ms: int | None = None
    resolved_ms: int | None = None
    closed_ms: int | None = None
    resource_ids: list[str] = []
    text: str = ""
    #: event id → content fingerprint of every applied event (redelivery vs. reused id)
    events: dict[str, str] = {}
    #: SLA targets fixed when opened or re-graded (see streams/sla.py); 0: not assigned
    response_target_ms: int = 0
    restore_target_ms: int = 0
    near_fraction: float = 0.0

    @property
    def version(self) -> int:
        """Number of events applied: grows by one per step, the same after a replay."""
        return len(self.events)


@dataclass(frozen=True, slots=True)
class Applied:
    incident: Incident
    previous: Incident | None


@dataclass(frozen=True, slots=True)
class Duplicate:
    incident: Incident


@dataclass(frozen=True, slots=True)
class Invalid:
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


Outcome = Applied | Duplicate | Invalid


def ms(ev: IncidentEvent) -> int:
    """The event's time in epoch milliseconds."""
    return int(ev.ts.timestamp() * 1000)


def apply(
    incident: Incident | None,
    ev: IncidentEvent,
    now_ms: int,
    max_future_ms: int = 300_000,
    owner_of: Callable[[str], str | None] | None = None,
) -> Outcome:
    """Judge ``ev`` against ``incident`` (None: unknown) and return the outcome.

    ``owner_of`` gives a resource's provider (None: unknown resource, accepted: the registry
    may lag behind); a resource of another provider is refused.
    """
    fp = fingerprint(ev)
    if incident is not None:
        if incident.provider_id != ev.provider_id:
            return Invalid("foreign_incident", f"incident {ev.incident_id!r} belongs to another provider")
        seen = incident.events.get(ev.event_id)
        if seen == fp:
            return Duplicate(incident)
        if seen is not None:
            return Invalid("duplicate_event_id", f"event id {ev.event_id!r} was used with other content")
    state = incident.state if incident is not None else None
    if ev.type not in ALLOWED[state]:
        if incident is None:
            return Invalid("not_opened", f"{ev.type!r} for incident {ev.incident_id!r}, never opened")
        if ev.type == "opened":
            return Invalid("already_opened", f"incident {ev.incident_id!r} is already {state}")
        return Invalid("bad_transition", f"{ev.type!r} not allowed when the incident is {state}")
    if owner_of is not None:
        for rid in ev.resource_ids:
            owner = owner_of(rid)
            if owner is not None and owner != ev.provider_id:
                return Invalid("foreign_resource", f"resource {rid!r} belongs to another provider")
    ts_ms = ms(ev)
    if ts_ms > now_ms + max_future_ms:
        return Invalid("future_timestamp", f"ts {ev.ts.isoformat()} more than {max_future_ms} ms ahead")
    if incident is None:
        if ev.severity is None:
            return Invalid("missing_severity", "'opened' needs a severity P1–P4")
        new = Incident(
            incident_id=ev.incident_id, provider_id=ev.provider_id, severity=ev.severity,
            drill=ev.drill, state="open", opened_ms=ts_ms, updated_ms=ts_ms,
            resource_ids=list(ev.resource_ids), text=ev.text, events={ev.event_id: fp},
        )  # fmt: skip
        return Applied(new, None)
    # a step may not precede the milestones before it (an update only the opening)
    milestones = (incident.opened_ms, incident.acknowledged_ms, incident.resolved_ms)
    floor_ms = incident.opened_ms if ev.type == "updated" else max(m for m in milestones if m is not None)
    if ts_ms < floor_ms:
        return Invalid("ts_before_previous", f"ts {ev.ts.isoformat()} is before the incident's previous step")
    changes: dict[str, object] = {
        "events": {**incident.events, ev.event_id: fp},
        "updated_ms": max(incident.updated_ms, ts_ms),
    }
    if ev.text:
        changes["text"] = ev.text
    if ev.type == "acknowledged":
        changes.update(state="acknowledged", acknowledged_ms=ts_ms)
    elif ev.type == "resolved":
        changes.update(state="resolved", resolved_ms=ts_ms)
    elif ev.type == "closed":
        changes.update(state="closed", closed_ms=ts_ms)
    else:  # updated
        if ev.severity is not None:
            changes["severity"] = ev.severity
        if ev.resource_ids:
            changes["resource_ids"] = list(ev.resource_ids)
    return Applied(msgspec.structs.replace(incident, **changes), incident)


def apply_all(events: Iterable[IncidentEvent], now_ms: int) -> tuple[dict[str, Incident], list[Invalid]]:
    """Apply events in order (per incident); the resulting incidents and the rejects."""
    incidents: dict[str, Incident] = {}
    rejects: list[Invalid] = []
    for ev in events:
        out = apply(incidents.get(ev.incident_id), ev, now_ms)
        if isinstance(out, Applied):
            incidents[ev.incident_id] = out.incident
        elif isinstance(out, Invalid):
            rejects.append(out)
    return incidents, rejects
