"""§19 decision deadlines: an application (lifecycle.v1 ``applied``) is decided within 2 working days.

On ``applied`` the deadline (end of the 2nd working day after the application day, Chinese
working-day calendar, :mod:`opscenter.workdays`) goes into the deadline set as
``life|<resource>|decision|lifecycle_deadline|<due_ms>``; ``accepted`` / ``refused`` sends
``lifecycle_decided`` (which resolves the alert). When the deadline falls due, the registry
(caught up with lifecycle.v1 first) is the judge: the event ``lifecycle_deadline`` is sent only
if the resource is still ``applied`` by that very application. Like the SLA signals it is recorded in ClickHouse ``sla_signals``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Sequence

import msgspec
from redis.asyncio import Redis

from opscenter.inventory import Registry
from opscenter.wire import TOPIC_EVENTS, Event, LifecycleEvent, json_encoder, lifecycle_decoder
from opscenter.workdays import DECISION_WORKING_DAYS, UnknownYearError, WorkdayCalendar
from streams.deadlines import DeadlineSet, Due, member
from streams.ingest import Message, SendFn

log = logging.getLogger(__name__)

DOMAIN = "life"
KIND = "lifecycle_deadline"
MARKS_KEY = "opscenter:decisions:processed"  # partition → last lifecycle.v1 offset processed


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


class DecisionStage:
    """Schedules the bureau's decision deadlines and judges them when they fall due."""

    def __init__(
        self,
        redis: Redis,
        deadlines: DeadlineSet,
        registry: Registry,
        calendar: WorkdayCalendar,
        send: SendFn,
        catch_up: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.redis, self.deadlines, self.registry, self.calendar = redis, deadlines, registry, calendar
        self.send, self.catch_up = send, catch_up

    def due_ms(self, applied_at: datetime) -> int:
        """When the decision on an application made at ``applied_at`` is due."""
        try:
            return _ms(self.calendar.deadline(applied_at, DECISION_WORKING_DAYS))
        except UnknownYearError as exc:
            log.warning("%s; counting Monday–Friday for that year", exc)
            lenient = WorkdayCalendar(self.calendar.overrides, weekdays_if_unknown=True)
            return _ms(lenient.deadline(applied_at, DECISION_WORKING_DAYS))

    async def process(self, messages: Sequence[Message]) -> None:
        """Schedule on ``applied``, announce ``accepted``/``refused``; bad events are the registry's."""
        pipe = self.redis.pipeline(transaction=True)
        marks: dict[str, int] = {}
        decided: list[LifecycleEvent] = []
        for m in messages:
            marks[str(m.partition)] = max(marks.get(str(m.partition), -1), m.offset)
            try:
                ev = lifecycle_decoder.decode(m.value)
            except (msgspec.DecodeError, UnicodeDecodeError):
                continue  # dead-lettered by the registry agent
            if ev.ts.tzinfo is None:
                continue
            if ev.type == "applied":
                due = self.due_ms(ev.ts)
                name = member(DOMAIN, ev.resource_id, "decision", KIND, due)
                self.deadlines.add(pipe, {name: due})
            elif ev.type in ("accepted", "refused"):
                # the deadline stays: when due, the registry (the judge of a decision's validity)
                # says the resource is no longer "applied" and it is dropped without an event
                decided.append(ev)
        # the notice resolves a lifecycle_deadline alert; sent before the marks (a replay resends it)
        for ev in decided:
            res = self.registry.get(ev.resource_id)
            notice = Event(
                event_id=f"lifecycle_decided:{ev.resource_id}:{ev.event_id}", kind="lifecycle_decided", ts=ev.ts,
                subject=ev.resource_id, provider_id=ev.provider_id,
                unit_id=ev.unit_id or (res.unit_id if res else ""),
                district_id=ev.district_id or (res.district_id if res else ""),
                resource_id=ev.resource_id, data={"decision": ev.type},
            )  # fmt: skip
            await self.send(TOPIC_EVENTS, ev.resource_id.encode(), json_encoder.encode(notice))
        if marks:
            pipe.hset(MARKS_KEY, mapping=marks)
        await pipe.execute()

    async def fire(self, dues: list[Due], now_ms: int) -> list[tuple[Due, Event | None]]:
        """Deadline handler of domain ``life``: an event for each application still undecided."""
        if self.catch_up is not None:
            await self.catch_up()  # a decision may sit in lifecycle.v1 not yet applied here
        out: list[tuple[Due, Event | None]] = []
        for d in dues:
            res = self.registry.get(d.subject)
            ok = (res is not None and res.state == "applied" and d.at_ms <= now_ms
                  and self.due_ms(res.updated) == d.at_ms)  # fmt: skip
            if not ok or res is None:
                out.append((d, None))
                continue
            out.append((d, Event(
                event_id=f"{KIND}:{d.subject}:{d.at_ms}", kind=KIND,
                ts=datetime.fromtimestamp(d.at_ms / 1000, tz=timezone.utc), subject=d.subject,
                provider_id=res.provider_id, unit_id=res.unit_id, district_id=res.district_id,
                resource_id=d.subject,
                data={"deadline": "decision", "due_ms": d.at_ms, "applied_ms": _ms(res.updated),
                      "working_days": DECISION_WORKING_DAYS, **({"name": res.name} if res.name else {})},
            )))  # fmt: skip
        return out


def register(app: Any, services: Any, stage: DecisionStage) -> None:
    """A second agent on lifecycle.v1 (beside the registry agent) that keeps the decision deadlines."""
    from opscenter.wire import TOPIC_LIFECYCLE

    topic = app.topic(TOPIC_LIFECYCLE, value_type=bytes, key_type=bytes)

    @app.agent(topic, name="decisions")
    async def decisions(stream: Any) -> None:
        async for events in stream.take_events(500, within=0.1):
            await stage.process(
                [Message(e.message.partition, e.message.offset, e.message.value, e.message.topic) for e in events]
            )
