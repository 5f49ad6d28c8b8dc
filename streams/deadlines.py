"""Deadlines that fire without new input and survive restarts: a Redis sorted set and a timer.

``{opscenter:deadlines}`` holds one member per future signal,
``<domain>|<subject>|<which>|<kind>|<at_ms>``, score = due ms. Every worker's timer claims due
members atomically (a Lua script moves them to an in-flight set with a lease), asks the
domain's handler whether the signal is still warranted and for its event, sends the event to
events.v1, records it in ClickHouse ``sla_signals`` and only then drops the claim. A worker
that dies in between leaves its claim to expire and another worker re-fires it, with the same
event id; two workers never hold a claim on one member at the same time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

from prometheus_client import Counter, Histogram
from redis.asyncio import Redis

from opscenter import metrics
from opscenter.store import AsyncStore
from opscenter.wire import TOPIC_EVENTS, Event, json_encoder
from streams.ingest import SendFn

log = logging.getLogger(__name__)

DEADLINES_KEY = "{opscenter:deadlines}"  # hash tag: one cluster slot with the in-flight set
INFLIGHT_KEY = "{opscenter:deadlines}:inflight"
SIGNAL_COLUMNS = ("event_id", "kind", "subject", "which", "provider_id", "severity", "at", "fired_ts")


sla_signals_fired = Counter(
    "opscenter_sla_signals_total", "SLA near-breach and breach events sent", ["kind"], registry=metrics.REGISTRY
)
sla_fire_delay = Histogram(
    "opscenter_sla_fire_delay_seconds", "Send time minus the signal's instant", registry=metrics.REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 15, 60, 300),
)  # fmt: skip

def member(domain: str, subject: str, which: str, kind: str, at_ms: int) -> str:
    """A deadline-set member; ``subject`` may contain ``|`` (parsed from the right)."""
    return f"{domain}|{subject}|{which}|{kind}|{at_ms}"


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed deadline-set member, parsed."""

    member: str
    domain: str
    subject: str
    which: str
    kind: str
    at_ms: int


def parse_member(m: str) -> Due:
    domain, rest = m.split("|", 1)
    subject, which, kind, at = rest.rsplit("|", 3)
    return Due(m, domain, subject, which, kind, int(at))


_CLAIM = """
local now, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZADD', KEYS[2], now + lease, m)
  table.insert(out, m)
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], now + lease, m)
  table.insert(out, m)
end
return out
"""


class DeadlineSet:
    """Deadlines in a Redis sorted set, claimed atomically with a lease (at-least-once firing)."""

    def __init__(self, redis: Redis, lease_ms: int = 15_000) -> None:
        self.redis, self.lease_ms = redis, lease_ms
        self._claim = redis.register_script(_CLAIM)

    def add(self, pipe: Any, members: Mapping[str, int]) -> None:
        if members:
            pipe.zadd(DEADLINES_KEY, dict(members))

    def remove(self, pipe: Any, members: Sequence[str]) -> None:
        if members:
            pipe.zrem(DEADLINES_KEY, *members)

    async def claim(self, now_ms: int, limit: int = 200) -> list[Due]:
        """Due members (and expired claims), now claimed by this caller for ``lease_ms``."""
        raw = await self._claim(keys=[DEADLINES_KEY, INFLIGHT_KEY], args=[now_ms, self.lease_ms, limit])
        return [parse_member(m.decode() if isinstance(m, bytes) else m) for m in raw]

    async def done(self, members: Sequence[str]) -> None:
        if members:
            await self.redis.zrem(INFLIGHT_KEY, *members)

    async def pending(self) -> dict[str, int]:
        """Every scheduled member and its due ms (for tests and the status page)."""
        return {m.decode(): int(s) for m, s in await self.redis.zrange(DEADLINES_KEY, 0, -1, withscores=True)}


async def _always() -> bool:
    return True


DueHandler = Callable[[list[Due], int], Awaitable[list[tuple[Due, Event | None]]]]


class DeadlineTimer:
    """Claims due deadlines, asks each domain's handler for the event to send, sends, records."""

    def __init__(self, deadlines: DeadlineSet, store: AsyncStore, send: SendFn,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.deadlines, self.store, self.send, self.clock = deadlines, store, send, clock
        self.handlers: dict[str, DueHandler] = {}
        self.record_timeout_s = 5.0
        #: False while a domain's input has a backlog here: an acknowledgement waiting in it
        #: must be applied before the deadline it answers is judged (after a restart)
        self.ready: Callable[[], Awaitable[bool]] = _always

    async def tick(self, now_ms: int | None = None) -> list[Event]:
        """Fire what is due; return the events sent."""
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        if not await self.ready():
            return []
        claimed = await self.deadlines.claim(now_ms)
        if not claimed:
            return []
        by_domain: dict[str, list[Due]] = {}
        for d in claimed:
            by_domain.setdefault(d.domain, []).append(d)
        verdicts: list[tuple[Due, Event | None]] = []
        for domain, dues in by_domain.items():
            handler = self.handlers.get(domain)
            if handler is None:
                log.error("no handler for deadlines of domain %r; dropping %d", domain, len(dues))
                verdicts.extend((d, None) for d in dues)
            else:
                verdicts.extend(await handler(dues, now_ms))
        sent: list[Event] = []
        finished: list[str] = []
        for due, ev in verdicts:
            if ev is not None:
                try:
                    await self.send(TOPIC_EVENTS, ev.subject.encode(), json_encoder.encode(ev))
                except Exception:  # noqa: BLE001 - the claim expires and the signal is retried
                    log.exception("sending %s failed; retried when its claim expires", ev.event_id)
                    continue
                sent.append(ev)
                sla_signals_fired.labels(ev.kind).inc()
                sla_fire_delay.observe(max(0.0, (int(self.clock() * 1000) - due.at_ms) / 1000))
            finished.append(due.member)
        if sent:
            fired_ms = int(self.clock() * 1000)
            rows = [[e.event_id, e.kind, e.subject, str(e.data.get("deadline", "")), e.provider_id, e.severity,
                     int(e.ts.timestamp() * 1000), fired_ms] for e in sent]  # fmt: skip
            try:  # a record for reports and rebuilds: never let ClickHouse stall the clocks
                await asyncio.wait_for(
                    self.store.insert_retrying("sla_signals", list(zip(*rows)), SIGNAL_COLUMNS), self.record_timeout_s
                )
            except Exception:  # noqa: BLE001
                log.exception("recording %d sent signals in sla_signals failed", len(rows))
        await self.deadlines.done(finished)
        return sent
