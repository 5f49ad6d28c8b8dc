"""The SLA domain: incidents.v1 → incident state (Redis + ClickHouse) and SLA deadlines.

State that a restart must not lose lives outside the worker:

- ``opscenter:incident:<id>`` (Redis hash): the incident's state (``json``: the pure
  :class:`~streams.incidents.Incident`, plus a few plain fields for dashboards); ClickHouse
  ``incidents.state_json`` holds the same, and the hash is rebuilt from it when Redis lost it.
- the deadline set of :mod:`streams.deadlines`, members
  ``inc|<incident>|<response|restore>|<sla_near_breach|sla_breach>|<at_ms>``.

When an incident changes, the signals its new state implies are diffed against those of its
old state: new ones are added, obsolete ones (an acknowledgement before the deadline, a
resolution, a re-grading) removed. Drills have none. At firing time the incident's state is
read again and the signal sent only if it is still warranted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

import msgspec
import orjson
from prometheus_client import Counter
from redis.asyncio import Redis

from opscenter import metrics
from opscenter.epochs import current_epoch
from opscenter.store import AsyncStore
from opscenter.wire import (
    TOPIC_DEADLETTER,
    TOPIC_EVENTS,
    TOPIC_INCIDENTS,
    TOPIC_LIFECYCLE,
    Event,
    json_encoder,
)
from opscenter.wire_incidents import IncidentEvent, fingerprint, incident_decoder
from opscenter.workdays import load_calendar
from streams import decisions as decisions_mod
from streams import sla
from streams.deadlines import DeadlineSet, DeadlineTimer, Due, member, parse_member
from streams.incidents import Applied, Duplicate, Incident, apply
from streams.ingest import Message, SendFn, dead_letter
from streams.validation import Reject

log = logging.getLogger(__name__)

OPEN_KEY = "opscenter:incidents:open"
INCIDENT_CHANNEL = "opscenter:incidents"
#: "<topic epoch>:<partition>" → last incidents.v1 offset processed (see :func:`backlog_done`)
MARKS_KEY = "opscenter:incidents:processed"
CLOSED_TTL_S = 35 * 86400  # a closed incident's hash stays a while for late redeliveries

EVENT_COLUMNS = (
    "incident_id", "event_id", "type", "ts", "provider_id", "severity", "resource_ids", "drill", "text",
    "fingerprint", "ingest_ts", "src_topic", "src_partition", "src_offset",
)  # fmt: skip
INCIDENT_COLUMNS = (
    "incident_id", "provider_id", "severity", "drill", "state", "resource_ids", "text", "opened",
    "acknowledged", "resolved", "closed", "updated", "response_target_ms", "restore_target_ms",
    "state_json", "version",
)  # fmt: skip

incidents_duplicate = Counter(
    "opscenter_incident_redeliveries_total", "Incident events seen again (changed nothing)", registry=metrics.REGISTRY
)

_incident_json = msgspec.json.Encoder()
_incident_decoder = msgspec.json.Decoder(Incident)


def incident_key(incident_id: str) -> str:
    return f"opscenter:incident:{incident_id}"


def event_id_of(m: str) -> str:
    """The events.v1 id a deadline-set member fires with."""
    d = parse_member(m)
    return sla.Signal(d.at_ms, d.subject, d.which, d.kind).event_id


def incident_members(incident: Incident | None) -> dict[str, int]:
    """The deadline-set members an incident's state implies (member → due ms)."""
    if incident is None:
        return {}
    return {member("inc", s.incident_id, s.which, s.kind, s.at_ms): s.at_ms for s in sla.signals(incident)}


def mark_field(k: bytes | str) -> tuple[str | None, int]:
    """A :data:`MARKS_KEY` field as (epoch, partition); epoch None for a field in another format."""
    tag, sep, part = (k.decode() if isinstance(k, bytes) else k).rpartition(":")
    return (tag, int(part)) if sep and tag and part.isdigit() else (None, -1)


def backlog_done(marks: Mapping[bytes | str, bytes | str], epoch: str, highwater: Mapping[int, int | None]) -> bool:
    """Whether the incidents.v1 partitions (partition → Fetch high watermark) are processed to the end.

    ``marks`` is the :data:`MARKS_KEY` hash, fields ``<epoch>:<partition>``. A mark of an older
    epoch (the topic's log was created anew, e.g. the embedded broker restarted while Redis
    kept its data) proves that nothing of the new log was processed there yet; a partition
    without any mark counts as done (Redis lost the hash: the committed offsets cannot be seen
    from here, and a timer that waits for ever would be worse).
    """
    current: dict[int, int] = {}
    stale: set[int] = set()
    for k, v in marks.items():
        tag, partition = mark_field(k)
        if tag is None:
            continue  # a mark without an epoch (written before epochs): says nothing about this log
        if tag == epoch:
            current[partition] = int(v)
        else:
            stale.add(partition)
    for partition, hw in highwater.items():
        if hw is None:
            return False  # not fetched yet
        default = -1 if partition in stale else hw - 1
        if hw > 0 and current.get(partition, default) < hw - 1:
            return False
    return True


def incident_row(inc: Incident) -> list[Any]:
    return [inc.incident_id, inc.provider_id, inc.severity, int(inc.drill), inc.state, inc.resource_ids, inc.text,
            inc.opened_ms, inc.acknowledged_ms, inc.resolved_ms, inc.closed_ms, inc.updated_ms,
            inc.response_target_ms, inc.restore_target_ms, _incident_json.encode(inc).decode(), inc.version]  # fmt: skip


class IncidentStore:
    """Incident states: the Redis hash first, ClickHouse when Redis lost it."""

    def __init__(self, store: AsyncStore, redis: Redis, deadlines: DeadlineSet) -> None:
        self.store, self.redis, self.deadlines = store, redis, deadlines
        self._rebuilt = False
        self._lock = asyncio.Lock()

    async def load(self, ids: Sequence[str]) -> tuple[dict[str, Incident], set[str]]:
        """States of ``ids`` and the subset that came from ClickHouse (Redis had lost them)."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}, set()
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hget(incident_key(i), "json")
        out = {i: _incident_decoder.decode(v) for i, v in zip(ids, await pipe.execute()) if v}
        missing = [i for i in ids if i not in out]
        from_store: dict[str, Incident] = {}
        if missing:
            rows = await self.store.query(
                "SELECT incident_id, argMax(state_json, version) FROM incidents "
                "WHERE incident_id IN {ids:Array(String)} GROUP BY incident_id",
                {"ids": missing},
            )
            from_store = {r[0]: _incident_decoder.decode(r[1]) for r in rows}
        return {**out, **from_store}, set(from_store)

    async def fired(self, ids: Sequence[str]) -> set[str]:
        """Event ids of the SLA signals already sent for these incidents."""
        if not ids:
            return set()
        rows = await self.store.query(
            "SELECT DISTINCT event_id FROM sla_signals WHERE subject IN {ids:Array(String)}", {"ids": list(ids)}
        )
        return {r[0] for r in rows}

    def write(self, pipe: Any, inc: Incident) -> None:
        """Queue the incident's hash, open-set membership and live notice on ``pipe``."""
        key = incident_key(inc.incident_id)
        pipe.hset(key, mapping={
            "json": _incident_json.encode(inc), "provider_id": inc.provider_id, "severity": inc.severity,
            "state": inc.state, "drill": int(inc.drill), "opened_ms": inc.opened_ms,
        })  # fmt: skip
        if inc.state == "closed":
            pipe.expire(key, CLOSED_TTL_S)
            pipe.srem(OPEN_KEY, inc.incident_id)
        else:
            pipe.persist(key)
            pipe.sadd(OPEN_KEY, inc.incident_id)
        pipe.publish(INCIDENT_CHANNEL, orjson.dumps({
            "incident_id": inc.incident_id, "provider_id": inc.provider_id, "severity": inc.severity,
            "state": inc.state, "drill": inc.drill, "opened_ms": inc.opened_ms,
        }))  # fmt: skip

    async def rebuild(self) -> int:
        """Once per process: restore the hashes and deadlines of unclosed incidents Redis lost."""
        async with self._lock:
            if self._rebuilt:
                return 0
            rows = await self.store.query(
                "SELECT incident_id, argMax(state_json, version), argMax(state, version) AS s "
                "FROM incidents GROUP BY incident_id HAVING s != 'closed'"
            )
            restored = 0
            if rows:
                pipe = self.redis.pipeline(transaction=False)
                for r in rows:
                    pipe.exists(incident_key(r[0]))
                lost = [(r[0], _incident_decoder.decode(r[1])) for r, ok in zip(rows, await pipe.execute()) if not ok]
                fired = await self.fired([i for i, _ in lost])
                pipe = self.redis.pipeline(transaction=True)
                for _, inc in lost:
                    self.write(pipe, inc)
                    members = incident_members(inc)
                    self.deadlines.add(pipe, {m: at for m, at in members.items() if event_id_of(m) not in fired})
                if lost:
                    await pipe.execute()
                    log.warning("rebuilt %d incidents (and their deadlines) from ClickHouse", len(lost))
                restored = len(lost)
            self._rebuilt = True
            return restored


class IncidentStage:
    """Applies incidents.v1 in order; invalid events go to the dead-letter topic."""

    def __init__(
        self,
        incidents: IncidentStore,
        send: SendFn,
        targets_for: Callable[[int], sla.SlaTargets],
        owner_of: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        max_future_ms: int = 300_000,
        place_of: Callable[[str], tuple[str, str]] | None = None,
    ) -> None:
        self.incidents, self.send, self.targets_for, self.owner_of = incidents, send, targets_for, owner_of
        self.clock, self.max_future_ms = clock, max_future_ms
        #: resource id → (unit id, district id) for the labels of incident notices
        self.place_of = place_of or (lambda _rid: ("", ""))
        self._epoch: str | None = None
        self._marked: set[int] = set()  # partitions whose marks of older epochs are dropped

    async def epoch(self) -> str:
        """The epoch of the incidents.v1 log (opscenter/epochs.py) the backlog marks belong to."""
        if self._epoch is None:
            self._epoch = await current_epoch(self.incidents.store, TOPIC_INCIDENTS)
        return self._epoch

    async def process(self, messages: Sequence[Message]) -> None:
        """Handle one batch; returns when its effects are stored (then Faust may commit)."""
        await self.incidents.rebuild()
        now_ms = int(self.clock() * 1000)
        decoded: list[tuple[Message, IncidentEvent]] = []
        for m in messages:
            metrics.messages_consumed.labels(m.topic).inc()
            try:
                decoded.append((m, incident_decoder.decode(m.value)))
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                reason = "schema" if isinstance(exc, msgspec.ValidationError) else "unparseable"
                await self._reject(Reject(reason, str(exc), m.value), m, now_ms)
        states, from_store = await self.incidents.load([ev.incident_id for _, ev in decoded])
        before = dict(states)
        event_rows: list[list[Any]] = []
        notices: list[Event] = []
        rejects: list[tuple[Reject, Message]] = []
        for m, ev in decoded:
            out = apply(states.get(ev.incident_id), ev, now_ms, self.max_future_ms, self.owner_of)
            if isinstance(out, Duplicate):
                incidents_duplicate.inc()
            elif isinstance(out, Applied):
                targets = self.targets_for(out.incident.opened_ms)
                states[ev.incident_id] = sla.retarget(out.incident, targets, out.previous)
                event_rows.append([ev.incident_id, ev.event_id, ev.type, int(ev.ts.timestamp() * 1000),
                                   ev.provider_id, ev.severity or "", list(ev.resource_ids), int(ev.drill),
                                   ev.text, fingerprint(ev), now_ms, m.topic, m.partition, m.offset])  # fmt: skip
                notices.append(self._notice(states[ev.incident_id], ev))
            else:
                rejects.append((Reject("invalid_incident", str(out), m.value, ev.provider_id), m))
        changed = [inc for i, inc in states.items() if before.get(i) is not inc]
        if changed:
            # Replacing tables (event key / incident version): a replayed insert adds nothing
            await self.incidents.store.insert_retrying("incident_events", list(zip(*event_rows)), EVENT_COLUMNS)
            await self.incidents.store.insert_retrying(
                "incidents", list(zip(*(incident_row(i) for i in changed))), INCIDENT_COLUMNS
            )
            # notices before the state: a crash in between replays them (same ids), never loses them
            await self._send_notices(notices)
            await self._schedule(changed, before, from_store)
        for reject, m in rejects:
            await self._reject(reject, m, now_ms)
        epoch = await self.epoch()
        marks: dict[str, int] = {}
        for m in messages:
            field = f"{epoch}:{m.partition}"
            marks[field] = max(marks.get(field, -1), m.offset)
        if marks:
            redis = self.incidents.redis
            new_here = {m.partition for m in messages} - self._marked
            old = [k for k in (await redis.hkeys(MARKS_KEY) if new_here else [])
                   if (f := mark_field(k))[0] not in (None, epoch) and f[1] in new_here]  # fmt: skip
            pipe = redis.pipeline(transaction=True)
            pipe.hset(MARKS_KEY, mapping=marks)
            if old:
                pipe.hdel(MARKS_KEY, *old)  # an older log's mark of these partitions: no longer needed
            await pipe.execute()
            self._marked |= new_here

    async def _send_notices(self, notices: list[Event]) -> None:
        """In order per incident, incidents in parallel (one produce round trip per step, not per event)."""
        by_subject: dict[str, list[Event]] = {}
        for n in notices:
            by_subject.setdefault(n.subject, []).append(n)

        async def in_order(events: list[Event]) -> None:
            for n in events:
                await self.send(TOPIC_EVENTS, n.subject.encode(), json_encoder.encode(n))

        await asyncio.gather(*(in_order(evs) for evs in by_subject.values()))

    def _notice(self, inc: Incident, ev: IncidentEvent) -> Event:
        """events.v1 ``incident_<type>`` for an applied step (alert rules open and resolve on these)."""
        unit, district = self.place_of(inc.resource_ids[0]) if inc.resource_ids else ("", "")
        return Event(
            event_id=f"incident:{inc.incident_id}:{ev.event_id}", kind=f"incident_{ev.type}", ts=ev.ts,
            subject=inc.incident_id, provider_id=inc.provider_id, unit_id=unit, district_id=district,
            resource_id=inc.resource_ids[0] if len(inc.resource_ids) == 1 else "", severity=inc.severity,
            data={"incident_id": inc.incident_id, "state": inc.state, "drill": inc.drill,
                  "resource_ids": list(inc.resource_ids), "text": inc.text},
        )  # fmt: skip

    async def _schedule(self, changed: list[Incident], before: dict[str, Incident], from_store: set[str]) -> None:
        fired = await self.incidents.fired([i.incident_id for i in changed if i.incident_id in from_store])
        deadlines = self.incidents.deadlines
        pipe = self.incidents.redis.pipeline(transaction=True)
        for inc in changed:
            # a state read back from ClickHouse had its deadlines lost with Redis: schedule all
            old = {} if inc.incident_id in from_store else incident_members(before.get(inc.incident_id))
            new = incident_members(inc)
            add = {m: at for m, at in new.items() if m not in old and event_id_of(m) not in fired}
            self.incidents.write(pipe, inc)
            deadlines.remove(pipe, [m for m in old if m not in new])
            deadlines.add(pipe, add)
        await pipe.execute()

    async def _reject(self, reject: Reject, m: Message, now_ms: int) -> None:
        d = dead_letter(reject, m, now_ms)
        await self.send(TOPIC_DEADLETTER, (d.provider_id or "-").encode(), json_encoder.encode(d))
        metrics.deadlettered.labels(d.provider_id or "-", d.reason).inc()


def signal_event(inc: Incident, due: Due) -> Event:
    """The events.v1 record of one SLA signal: the same bytes whenever it is (re-)fired."""
    d = next(x for x in sla.deadlines(inc) if x.which == due.which)
    return Event(
        event_id=sla.Signal(due.at_ms, inc.incident_id, due.which, due.kind).event_id,
        kind=due.kind,
        ts=datetime.fromtimestamp(due.at_ms / 1000, tz=timezone.utc),
        subject=inc.incident_id,
        provider_id=inc.provider_id,
        resource_id=inc.resource_ids[0] if len(inc.resource_ids) == 1 else "",
        severity=inc.severity,
        data={"incident_id": inc.incident_id, "deadline": due.which, "due_ms": d.due_ms, "target_ms": d.target_ms,
              "opened_ms": inc.opened_ms, "resource_ids": list(inc.resource_ids)},
    )  # fmt: skip


@dataclass
class SlaDomain:
    """The SLA domain of one process (``services.domains["sla"]``)."""

    targets: sla.SlaTargets
    incidents: IncidentStore
    stage: IncidentStage
    timer: DeadlineTimer
    decisions: decisions_mod.DecisionStage | None = None
    #: assurance-period hook: opened ms → (the period's overrides, its name) or None
    overrides_for: Callable[[int], tuple[Mapping[str, Any], str] | None] = field(default=lambda _ms: None)
    tick_s: float = 0.5

    #: the tighter targets of sla_assurance.yaml and the periods in force (refreshed from Redis)
    assurance_overrides: Mapping[str, Any] | None = None
    periods: list[dict[str, Any]] = field(default_factory=list)
    redis: Any = None

    def __post_init__(self) -> None:
        self.overrides_for = self._assurance_overrides

    def _assurance_overrides(self, opened_ms: int) -> tuple[Mapping[str, Any], str] | None:
        """Inside an assurance period (alert calendar), the sla_assurance.yaml targets apply."""
        if not self.assurance_overrides:
            return None
        inside = [p for p in self.periods if p.get("starts_ms", 0) <= opened_ms < p.get("ends_ms", 0)]
        if not inside:
            return None
        return self.assurance_overrides, f"assurance period {inside[0].get('name_zh') or inside[0].get('id')}"

    async def refresh_periods(self) -> None:
        """The assurance periods kept by the alert engine (Redis hash ``opscenter:alerts:periods``)."""
        if self.redis is None:
            return
        raw = await self.redis.hgetall(PERIODS_KEY)
        self.periods = [orjson.loads(v) for v in raw.values()]

    def targets_for(self, opened_ms: int) -> sla.SlaTargets:
        """The targets in force when an incident opened (an assurance period may tighten them)."""
        period = self.overrides_for(opened_ms)
        return self.targets.with_overrides(*period) if period else self.targets

    async def fire_incidents(self, dues: list[Due], now_ms: int) -> list[tuple[Due, Event | None]]:
        """Deadline handler of domain ``inc``: an event for each signal its incident still warrants."""
        await self.incidents.rebuild()
        states, _ = await self.incidents.load([d.subject for d in dues])
        out: list[tuple[Due, Event | None]] = []
        for d in dues:
            inc = states.get(d.subject)
            ok = inc is not None and sla.still_due(inc, d.which, d.kind, d.at_ms, now_ms)
            out.append((d, signal_event(inc, d) if ok and inc is not None else None))
        return out


PERIODS_KEY = "opscenter:alerts:periods"
ASSURANCE_TARGETS_FILE = Path(__file__).resolve().parent.parent / "opscenter" / "data" / "sla_assurance.yaml"


def load_assurance_overrides(targets: sla.SlaTargets, path: str | Path) -> Mapping[str, Any] | None:
    """The assurance-period targets file, validated against the base targets (None if absent)."""
    import yaml

    p = Path(path)
    if not p.exists():
        return None
    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    targets.with_overrides(raw, str(p))  # raises a DataFileError naming the file and field
    return raw


def build_domain(services: Any, targets: sla.SlaTargets | None = None) -> SlaDomain:
    """The SLA domain over a process's services (targets: ``services.domains["sla_targets"]`` or the file)."""
    s = services.settings
    if targets is None:
        targets = services.domains.get("sla_targets") or sla.load_targets(
            getattr(s, "sla_targets_file", None) or sla.DEFAULT_TARGETS_FILE
        )
    deadlines = DeadlineSet(services.redis)
    incidents = IncidentStore(services.store, services.redis, deadlines)
    registry = services.registry

    def owner_of(rid: str) -> str | None:
        r = registry.get(rid)
        return r.provider_id if r is not None else None

    timer = DeadlineTimer(deadlines, services.store, services.send)
    def place_of(rid: str) -> tuple[str, str]:
        r = registry.get(rid)
        return (r.unit_id, r.district_id) if r is not None else ("", "")

    cell: list[SlaDomain] = []  # the stage asks the domain, so assurance periods apply (targets_for)
    stage = IncidentStage(incidents, services.send, lambda ms: cell[0].targets_for(ms), owner_of,
                          max_future_ms=s.max_future_s * 1000, place_of=place_of)  # fmt: skip
    reader = getattr(services, "lifecycle_reader", None)
    decisions = decisions_mod.DecisionStage(services.redis, deadlines, registry, load_calendar(), services.send,
                                            catch_up=reader.catch_up if reader is not None else None)  # fmt: skip
    domain = SlaDomain(targets, incidents, stage, timer, decisions)
    cell.append(domain)
    assurance_file = getattr(s, "sla_assurance_file", None) or ASSURANCE_TARGETS_FILE
    domain.assurance_overrides = load_assurance_overrides(targets, assurance_file)
    domain.redis = services.redis
    stage.targets_for = domain.targets_for
    timer.handlers["inc"] = domain.fire_incidents
    timer.handlers[decisions_mod.DOMAIN] = decisions.fire
    return domain


def register(app: Any, services: Any) -> None:
    """The incidents agent, the decision-deadline agent and the deadline timer."""
    domain = services.domains.get("sla")
    if domain is None:
        domain = services.domains["sla"] = build_domain(services)
    topic = app.topic(TOPIC_INCIDENTS, value_type=bytes, key_type=bytes)

    async def caught_up() -> bool:
        """Whether this worker has processed its incidents.v1 and lifecycle.v1 partitions to the end."""
        try:
            consumer = app.consumer
            # high watermarks from Fetch responses: right on Tansu (DESIGN.md)
            highwater = {tp.partition: consumer.highwater(tp) for tp in consumer.assignment()
                         if tp.topic == TOPIC_INCIDENTS}  # fmt: skip
            marks = await services.redis.hgetall(MARKS_KEY)
            if not backlog_done(marks, await domain.stage.epoch(), highwater):
                return False
            marks = {int(k): int(v) for k, v in (await services.redis.hgetall(decisions_mod.MARKS_KEY)).items()}
            for tp in consumer.assignment():
                if tp.topic != TOPIC_LIFECYCLE:
                    continue
                hw = consumer.highwater(tp)
                if hw is None:
                    return False  # not fetched yet
                if hw > 0 and marks.get(tp.partition, hw - 1) < hw - 1:
                    return False
            return True
        except Exception:  # noqa: BLE001 - never let the check stop the clocks
            log.exception("backlog check failed; firing anyway")
            return True

    domain.timer.ready = caught_up

    @app.timer(interval=5.0)
    async def sla_assurance_periods() -> None:
        # the periods in force decide which targets a newly opened incident gets (§28)
        try:
            await domain.refresh_periods()
        except Exception:  # noqa: BLE001 - keep the last known periods
            log.exception("refreshing assurance periods failed")

    @app.agent(topic, name="incidents")
    async def incidents(stream: Any) -> None:
        async for events in stream.take_events(500, within=0.1):
            await domain.stage.process(
                [Message(e.message.partition, e.message.offset, e.message.value, e.message.topic) for e in events]
            )

    if domain.decisions is not None:
        decisions_mod.register(app, services, domain.decisions)

    # a timer that raises would crash the Faust app: log and try again next tick
    @app.timer(interval=domain.tick_s)
    async def sla_deadlines() -> None:
        try:
            await domain.timer.tick()
        except Exception:  # noqa: BLE001
            log.exception("firing SLA deadlines failed; retrying next tick")
