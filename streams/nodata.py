"""Silence and telemetry-quality judgement, pure: state and ``now`` in, state changes and messages out.

A resource in service (delivered, not deregistered) whose newest sample (event time) — or, if it
never reported, its delivery — is at least ``intervals`` × its declared ``interval_s`` old is
*silent*: a :class:`Silence` is stored and ``nodata`` goes to events.v1. Still silent
``incident_after_s`` after its last sample: an auto-detected incident is opened on incidents.v1.
A newer sample clears both (``nodata_cleared``; incident ``resolved``). When at least
``outage_pct`` % of a provider's in-service resources (and at least ``outage_min_resources`` of
them in service) are silent at once: ``provider_outage`` (``provider_recovered`` below it).
A provider's completeness over the last window below ``low_pct``: ``telemetry_quality`` with
``data.state = "low"``; back at ``clear_pct`` or above: the same kind with ``state = "ok"``.

Every change is a compare-and-set of one stored value (:class:`Change`): the caller stores the
new value only if the old one is still there, and only then sends the change's messages. So two
workers that judge the same silence at once send its messages once; event and incident ids
derive from the silence start, so a restart judging it again names the same ids.
No I/O here (docs/telemetry-quality.md).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import msgspec

from opscenter.wire import TOPIC_EVENTS, TOPIC_INCIDENTS, Event, json_encoder
from opscenter.wire_incidents import IncidentEvent
from opscenter.wire_incidents import encode as encode_incident

SHANGHAI_OFFSET = timezone(timedelta(hours=8), "UTC+8")
#: how many silent resources a provider_outage event lists by id
OUTAGE_LISTED = 50


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings of the judgement (``nodata_*`` and ``quality_*`` of opscenter/settings.py)."""

    intervals: int = 3
    incident_after_s: float = 900.0
    incident_severity: str = "P3"
    startup_grace_s: float = 300.0
    outage_pct: float = 50.0
    outage_min_resources: int = 3
    low_pct: float = 90.0
    clear_pct: float = 95.0


@dataclass(frozen=True, slots=True)
class Watched:
    """A resource as the judgement sees it (from the registry)."""

    resource_id: str
    provider_id: str
    unit_id: str
    district_id: str
    interval_s: int
    delivered_ms: int
    deregistered_ms: int | None = None
    name: str = ""  # the registered name (alert summaries show it instead of the id)

    def in_service(self, now_ms: int) -> bool:
        """Delivered and not (yet) deregistered at ``now_ms``."""
        return self.delivered_ms <= now_ms and (self.deregistered_ms is None or now_ms < self.deregistered_ms)

    def silent_after_ms(self, policy: Policy) -> int:
        """How long without a sample makes it silent."""
        return policy.intervals * max(self.interval_s, 1) * 1000

    def incident_after_ms(self, policy: Policy) -> int:
        """How long without a sample opens an incident (never before it is silent)."""
        return max(int(policy.incident_after_s * 1000), self.silent_after_ms(policy))


class Silence(msgspec.Struct, frozen=True, omit_defaults=True):
    """A resource in nodata (stored as JSON per resource); the labels it was raised with."""

    since_ms: int  # the last sample before the silence (or the delivery, if it never reported)
    due_ms: int  # when the silence became nodata: since + intervals × interval_s
    provider_id: str
    interval_s: int
    reported: bool = True  # False: silent since delivery, never a sample
    unit_id: str = ""
    district_id: str = ""
    incident_id: str = ""
    incident_ms: int = 0  # the auto-detected incident's opening time


class Outage(msgspec.Struct, frozen=True):
    """A provider in outage (stored as JSON per provider)."""

    since_ms: int
    silent: int
    in_service: int


class LowQuality(msgspec.Struct, frozen=True):
    """A provider whose completeness is low (stored as JSON per provider)."""

    since_ms: int
    completeness_pct: float


_silence_decoder = msgspec.json.Decoder(Silence)
_outage_decoder = msgspec.json.Decoder(Outage)
_low_decoder = msgspec.json.Decoder(LowQuality)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to produce: topic, key, value (and its id, for logs and tests)."""

    topic: str
    key: bytes
    value: bytes
    message_id: str


@dataclass(frozen=True, slots=True)
class Change:
    """Compare-and-set ``table[key]`` from ``old`` to ``new`` (None: absent); send ``messages`` if it wins."""

    table: str  # "silence" | "outage" | "quality"
    key: str
    old: bytes | None
    new: bytes | None
    messages: tuple[Outgoing, ...]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _local(ms: int) -> str:
    return _dt(ms).astimezone(SHANGHAI_OFFSET).strftime("%Y-%m-%d %H:%M:%S")


def _event(event_id: str, kind: str, ts_ms: int, subject: str, provider: str, data: dict[str, object],
           unit: str = "", district: str = "", resource: str = "", severity: str = "") -> Outgoing:  # fmt: skip
    ev = Event(event_id, kind, _dt(ts_ms), subject, provider, unit, district, resource, severity, data)
    return Outgoing(TOPIC_EVENTS, subject.encode(), json_encoder.encode(ev), event_id)


def incident_id_of(resource_id: str, since_ms: int) -> str:
    """The auto-detected incident of one silence: the same id whoever opens it, after any restart."""
    return f"auto-nodata-{resource_id}-{since_ms}"


# -- nodata ---------------------------------------------------------------------------------------


def _nodata_event(rid: str, s: Silence, policy: Policy, name: str = "") -> Outgoing:
    return _event(
        f"nodata:{rid}:{s.since_ms}", "nodata", s.due_ms, rid, s.provider_id,
        {"since_ms": s.since_ms, "reported": s.reported, "interval_s": s.interval_s,
         "intervals": policy.intervals, "silent_s": (s.due_ms - s.since_ms) // 1000, **({"name": name} if name else {})},
        s.unit_id, s.district_id, rid,
    )  # fmt: skip


def _cleared_event(rid: str, s: Silence, at_ms: int, resumed_ms: int | None, reason: str) -> Outgoing:
    return _event(
        f"nodata_cleared:{rid}:{s.since_ms}", "nodata_cleared", at_ms, rid, s.provider_id,
        {"since_ms": s.since_ms, "resumed_ms": resumed_ms, "reason": reason, "silent_s": (at_ms - s.since_ms) // 1000,
         "incident_id": s.incident_id or None},
        s.unit_id, s.district_id, rid,
    )  # fmt: skip


def _incident(iid: str, type_: str, ts_ms: int, s: Silence, rid: str, severity: str | None, text: str) -> Outgoing:
    ev = IncidentEvent(f"{iid}:{type_}", iid, type_, _dt(ts_ms), s.provider_id, severity,  # type: ignore[arg-type]
                       [rid], False, text)  # fmt: skip
    return Outgoing(TOPIC_INCIDENTS, iid.encode(), encode_incident(ev), ev.event_id)


def _opened_text(rid: str, s: Silence, minutes: int) -> str:
    since = _local(s.since_ms)
    what_zh = f"自 {since} 起" if s.reported else f"自 {since} 交付以来"
    what_en = f"since {since} (UTC+8)" if s.reported else f"since its delivery at {since} (UTC+8)"
    return (f"【自动检测】资源 {rid} {what_zh}无监控数据，已超过 {minutes} 分钟（§17）。"
            f" [Auto-detected] No telemetry from resource {rid} {what_en}, for more than {minutes} min (§17).")  # fmt: skip


def _resolved_text(rid: str, resumed_ms: int | None) -> str:
    if resumed_ms is None:
        return (f"【自动检测】资源 {rid} 已不在服务期内，无数据事件结束。"
                f" [Auto-detected] Resource {rid} is no longer in service; the no-data incident ends.")  # fmt: skip
    at = _local(resumed_ms)
    return (f"【自动检测】资源 {rid} 的监控数据已于 {at} 恢复。"
            f" [Auto-detected] Telemetry from resource {rid} resumed at {at} (UTC+8).")  # fmt: skip


def judge_silences(
    now_ms: int,
    started_ms: int,
    watched: Sequence[Watched],
    last_seen: Mapping[str, int | None],
    silences: Mapping[str, bytes],
    policy: Policy,
    ended_incidents: Collection[str] = (),
) -> tuple[list[Change], dict[str, Silence]]:
    """The nodata changes at ``now_ms``, and every resource's silence after them.

    ``last_seen``: newest sample time per resource (None or absent: unknown; a stored silence
    is then kept). ``silences``: the stored values. ``ended_incidents``: auto incidents already
    resolved or closed by someone (their ``resolved`` would be refused). Nothing new is raised
    before ``started_ms + startup_grace_s``.
    """
    in_grace = now_ms < started_ms + policy.startup_grace_s * 1000
    by_id = {w.resource_id: w for w in watched}
    changes: list[Change] = []
    after: dict[str, Silence] = {}
    for rid, raw in silences.items():
        try:
            cur = _silence_decoder.decode(raw)
        except msgspec.DecodeError:
            changes.append(Change("silence", rid, raw, None, ()))  # unreadable: forget it, judge anew
            continue
        w = by_id.get(rid)
        seen = last_seen.get(rid)
        if w is not None and w.in_service(now_ms) and (seen is None or seen <= cur.since_ms):
            nxt = cur
            if not cur.incident_id and not in_grace and now_ms >= cur.since_ms + w.incident_after_ms(policy):
                iid = incident_id_of(rid, cur.since_ms)
                opened_ms = cur.since_ms + w.incident_after_ms(policy)
                nxt = msgspec.structs.replace(cur, incident_id=iid, incident_ms=opened_ms)
                text = _opened_text(rid, cur, w.incident_after_ms(policy) // 60_000)
                msg = _incident(iid, "opened", opened_ms, cur, rid, policy.incident_severity, text)
                changes.append(Change("silence", rid, raw, json_encoder.encode(nxt), (msg,)))
            after[rid] = nxt
            continue
        # data resumed, or the resource left service: clear (and resolve its incident)
        resumed = seen if (w is not None and w.in_service(now_ms) and seen is not None) else None
        at_ms = max(resumed if resumed is not None else now_ms, cur.due_ms)
        msgs = [_cleared_event(rid, cur, at_ms, resumed, "data_resumed" if resumed is not None else "out_of_service")]
        if cur.incident_id and cur.incident_id not in ended_incidents:
            msgs.append(_incident(cur.incident_id, "resolved", max(at_ms, cur.incident_ms), cur, rid, None,
                                  _resolved_text(rid, resumed)))  # fmt: skip
        changes.append(Change("silence", rid, raw, None, tuple(msgs)))
    if in_grace:
        return changes, after
    for w in watched:
        rid = w.resource_id
        if rid in silences or not w.in_service(now_ms):
            continue
        seen = last_seen.get(rid)
        since = max(seen, w.delivered_ms) if seen is not None else w.delivered_ms
        due = since + w.silent_after_ms(policy)
        if now_ms < due:
            continue
        s = Silence(since, due, w.provider_id, w.interval_s, seen is not None and seen >= w.delivered_ms,
                    w.unit_id, w.district_id)  # fmt: skip
        msgs = [_nodata_event(rid, s, policy, w.name)]
        if now_ms >= since + w.incident_after_ms(policy):  # silent for long already (e.g. a worker was down)
            iid = incident_id_of(rid, since)
            s = msgspec.structs.replace(s, incident_id=iid, incident_ms=since + w.incident_after_ms(policy))
            msgs.append(_incident(iid, "opened", s.incident_ms, s, rid, policy.incident_severity,
                                  _opened_text(rid, s, w.incident_after_ms(policy) // 60_000)))  # fmt: skip
        changes.append(Change("silence", rid, None, json_encoder.encode(s), tuple(msgs)))
        after[rid] = s
    return changes, after


# -- provider outage ------------------------------------------------------------------------------


def judge_outages(
    now_ms: int, watched: Sequence[Watched], silent: Mapping[str, Silence], outages: Mapping[str, bytes], policy: Policy
) -> list[Change]:
    """``provider_outage`` / ``provider_recovered`` changes, from the silences after this round."""
    in_service: dict[str, list[str]] = {}
    for w in watched:
        if w.in_service(now_ms):
            in_service.setdefault(w.provider_id, []).append(w.resource_id)
    changes: list[Change] = []
    for provider in sorted(set(in_service) | set(outages)):
        ids = in_service.get(provider, [])
        quiet = sorted((silent[r].due_ms, r) for r in ids if r in silent)
        total = len(ids)
        need = max(1, math.ceil(policy.outage_pct / 100 * total - 1e-9))
        out = total >= policy.outage_min_resources and len(quiet) >= need
        raw = outages.get(provider)
        cur: Outage | None = None
        if raw is not None:
            try:
                cur = _outage_decoder.decode(raw)
            except msgspec.DecodeError:
                cur = None
        pct = round(100.0 * len(quiet) / total, 1) if total else 0.0
        data: dict[str, object] = {"silent": len(quiet), "in_service": total, "silent_pct": pct,
                                   "threshold_pct": policy.outage_pct,
                                   "resources": [r for _, r in quiet[:OUTAGE_LISTED]]}  # fmt: skip
        if out and cur is None:
            since = quiet[need - 1][0]  # the silence that tipped it: the same whoever judges it
            new = Outage(since, len(quiet), total)
            msg = _event(f"provider_outage:{provider}:{since}", "provider_outage", max(since, 0), provider, provider,
                         {**data, "since_ms": since}, severity="P1")  # fmt: skip
            changes.append(Change("outage", provider, raw, json_encoder.encode(new), (msg,)))
        elif not out and raw is not None:
            since = cur.since_ms if cur is not None else 0
            msg = _event(f"provider_recovered:{provider}:{since}", "provider_recovered", now_ms, provider, provider,
                         {**data, "since_ms": since})  # fmt: skip
            changes.append(Change("outage", provider, raw, None, (msg,)))
    return changes



# -- telemetry quality (completeness over the last window) ---------------------------------------


def window_completeness(
    watched: Sequence[Watched], samples: Mapping[str, int], from_ms: int, to_ms: int
) -> dict[str, tuple[float, float]]:
    """Per provider: (counted, expected) samples in [from_ms, to_ms).

    Expected: each resource's in-service time inside the window / its interval; counted: its
    samples, at most the expected (one over-reporting resource never hides a silent one).
    """
    out: dict[str, tuple[float, float]] = {}
    for w in watched:
        lo = max(from_ms, w.delivered_ms)
        hi = min(to_ms, w.deregistered_ms if w.deregistered_ms is not None else to_ms)
        if hi <= lo:
            continue
        expected = (hi - lo) / 1000 / max(w.interval_s, 1)
        counted = min(float(samples.get(w.resource_id, 0)), expected)
        c, e = out.get(w.provider_id, (0.0, 0.0))
        out[w.provider_id] = (c + counted, e + expected)
    return out


def judge_quality(
    now_ms: int, window: tuple[int, int], figures: Mapping[str, tuple[float, float]], states: Mapping[str, bytes],
    policy: Policy,
) -> list[Change]:  # fmt: skip
    """``telemetry_quality`` changes: low below ``low_pct``, ok again at ``clear_pct`` (hysteresis)."""
    clear_pct = max(policy.clear_pct, policy.low_pct)
    changes: list[Change] = []
    for provider in sorted(set(figures) | set(states)):
        counted, expected = figures.get(provider, (0.0, 0.0))
        pct = 100.0 * counted / expected if expected > 0 else None
        raw = states.get(provider)
        data: dict[str, object] = {
            "completeness_pct": None if pct is None else round(pct, 2), "threshold_pct": policy.low_pct,
            "clear_pct": clear_pct, "window_from_ms": window[0], "window_to_ms": window[1],
            "samples": round(counted), "expected": round(expected, 1),
        }  # fmt: skip
        if raw is None and pct is not None and pct < policy.low_pct:
            new = LowQuality(window[1], round(pct, 2))
            msg = _event(f"telemetry_quality:{provider}:low:{window[1]}", "telemetry_quality", now_ms, provider,
                         provider, {**data, "state": "low", "since_ms": window[1]})  # fmt: skip
            changes.append(Change("quality", provider, None, json_encoder.encode(new), (msg,)))
        elif raw is not None and (pct is None or pct >= clear_pct):
            try:
                since = _low_decoder.decode(raw).since_ms
            except msgspec.DecodeError:
                since = 0
            msg = _event(f"telemetry_quality:{provider}:ok:{since}", "telemetry_quality", now_ms, provider, provider,
                         {**data, "state": "ok", "since_ms": since})  # fmt: skip
            changes.append(Change("quality", provider, raw, None, (msg,)))
    return changes
