"""The telemetry-quality monitor (§17): nodata, auto-detected incidents, provider outages, completeness.

Two timers on the **leader worker only** (one worker judges the whole city: the inputs — the
registry, the newest sample of every resource in Redis, the recent counts in ClickHouse — are
shared, so nothing is gained by splitting the work per partition):

- ``quality-nodata`` (``nodata_tick_s``): silences → ``nodata`` / ``nodata_cleared``,
  incidents.v1 ``opened`` / ``resolved`` of auto-detected incidents, ``provider_outage`` /
  ``provider_recovered``;
- ``quality-completeness`` (``quality_tick_s``): each provider's completeness over the last
  ``quality_window_s`` → ``telemetry_quality``.

Leadership can overlap during a rebalance, and a worker can die mid-tick. So every state change
is a compare-and-set in Redis (a Lua script) that, in the same atomic step, puts the change's
messages in an outbox; only the worker whose compare-and-set won has messages to send. The
outbox is flushed by one worker at a time (a claim with a lease), in order, and an entry is
removed only after the broker acknowledged it: a worker killed before that leaves it to the next
flush, which sends it with the same id (consumers skip ids they applied). Two workers judging the
same silence at once therefore produce its events once; a restart finds the silence stored and
raises nothing again. Pure judgement: streams/nodata.py; docs/telemetry-quality.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
import orjson
from redis.asyncio import Redis

import sql
from opscenter.inventory import Registry
from streams.live import RES_PREFIX
from streams.nodata import (
    Change,
    Outgoing,
    Policy,
    Silence,
    Watched,
    judge_outages,
    judge_quality,
    judge_silences,
    window_completeness,
)
from streams.sla_agent import incident_key

log = logging.getLogger(__name__)

PREFIX = "{opscenter:quality}"  # hash tag: every key of the monitor in one cluster slot
OUTBOX_KEY = PREFIX + ":outbox"
INFLIGHT_KEY = PREFIX + ":inflight"
SEQ_KEY = PREFIX + ":seq"
#: how long a flush owns the outbox before another worker may take over
LEASE_MS = 30_000
#: how long a ClickHouse answer about a resource's newest sample is reused
FALLBACK_TTL_S = 60.0
#: how far back the ClickHouse fallback looks for a resource's newest sample
FALLBACK_HORIZON_MS = 7 * 86_400_000

SendFn = Callable[[str, bytes | None, bytes], Awaitable[None]]


def table_key(table: str) -> str:
    """The Redis hash holding one kind of state: ``silence`` (per resource), ``outage``, ``quality``."""
    return f"{PREFIX}:{table}"


# ARGV: field, old value ('' = absent), new value ('' = delete), messages…
_CAS = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then cur = '' end
if cur ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
for i = 4, #ARGV do
  local seq = redis.call('INCR', KEYS[3])
  redis.call('HSET', KEYS[2], string.format('%020d', seq), ARGV[i])
end
return 1
"""

# One flush at a time: nothing is claimed while another worker's lease runs.
_CLAIM = """
if #redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'LIMIT', 0, 1) > 0 then return {} end
local out = redis.call('HGETALL', KEYS[1])
local until_ = tonumber(ARGV[1]) + tonumber(ARGV[2])
for i = 1, #out, 2 do redis.call('ZADD', KEYS[2], until_, out[i]) end
return out
"""


class SignalStore:
    """State of the monitor in Redis hashes, changed only by compare-and-set, plus the outbox."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._cas = redis.register_script(_CAS)
        self._claim = redis.register_script(_CLAIM)

    async def load(self, table: str) -> dict[str, bytes]:
        raw = await self.redis.hgetall(table_key(table))
        return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}

    async def apply(self, changes: Iterable[Change]) -> list[Change]:
        """Apply each change whose old value is still stored; return those (their messages are queued)."""
        won = []
        for c in changes:
            msgs = [orjson.dumps([m.topic, m.key.decode(), m.value.decode(), m.message_id]) for m in c.messages]
            args = [c.key, c.old or b"", c.new or b"", *msgs]
            if await self._cas(keys=[table_key(c.table), OUTBOX_KEY, SEQ_KEY], args=args):
                won.append(c)
        return won

    async def flush(self, send: SendFn, now_ms: int) -> list[Outgoing]:
        """Send the outbox in order; an entry leaves it only once the broker has it."""
        raw = await self._claim(keys=[OUTBOX_KEY, INFLIGHT_KEY], args=[now_ms, LEASE_MS])
        if not raw:
            return []
        entries = sorted(zip(raw[0::2], raw[1::2]))
        sent: list[Outgoing] = []
        try:
            for field, payload in entries:
                topic, key, value, mid = orjson.loads(payload)
                await send(topic, key.encode(), value.encode())
                sent.append(Outgoing(topic, key.encode(), value.encode(), mid))
                await self.redis.hdel(OUTBOX_KEY, field)
                await self.redis.zrem(INFLIGHT_KEY, field)
        finally:
            # not sent (a failed send): give the rest back at once, in order, to the next flush
            rest = [f for f, _ in entries[len(sent):]]
            if rest:
                await self.redis.zrem(INFLIGHT_KEY, *rest)
        return sent

    async def pending(self) -> int:
        """Messages waiting in the outbox."""
        return int(await self.redis.hlen(OUTBOX_KEY))


def _ms(ts: datetime | None) -> int | None:
    return None if ts is None else int(ts.timestamp() * 1000)


def watched_of(registry: Registry) -> list[Watched]:
    """Every delivered resource of the registry."""
    out = []
    for r in registry.all():
        delivered = _ms(r.delivered)
        if delivered is not None:
            out.append(Watched(r.resource_id, r.provider_id, r.unit_id, r.district_id, r.interval_s, delivered,
                               _ms(r.deregistered), r.name))  # fmt: skip
    return out


class QualityMonitor:
    """Judges silences, outages and completeness against Redis and ClickHouse; sends what changed."""

    def __init__(self, redis: Redis, store: Any, registry: Registry, send: SendFn, policy: Policy, *,
                 window_s: int = 3600, lag_s: float = 120.0, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.redis, self.store, self.registry, self.send, self.policy = redis, store, registry, send, policy
        self.window_s, self.lag_s, self.clock = window_s, lag_s, clock
        self.signals = SignalStore(redis)
        self.started_ms = int(clock() * 1000)
        self._fallback: dict[str, tuple[int | None, float]] = {}

    def _now(self, now_ms: int | None) -> int:
        return int(self.clock() * 1000) if now_ms is None else now_ms

    async def last_seen(self, ids: Sequence[str]) -> dict[str, int | None]:
        """Newest sample time per resource from the live state (None: not in Redis)."""
        out: dict[str, int | None] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i : i + 1000]
            for rid, raw in zip(chunk, await self.redis.mget([RES_PREFIX + r for r in chunk])):
                try:
                    out[rid] = int(orjson.loads(raw)["ts_ms"]) if raw is not None else None
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    out[rid] = None
        return out

    async def _from_store(self, missing: Sequence[Watched], now_ms: int) -> dict[str, int | None]:
        """Newest sample in ClickHouse of resources Redis knows nothing about (answers reused a minute)."""
        now = time.monotonic()
        ask = [w for w in missing if self._fallback.get(w.resource_id, (None, 0.0))[1] < now]
        if ask:
            since = max(min(w.delivered_ms for w in ask), now_ms - FALLBACK_HORIZON_MS)
            rows = await self.store.query(sql.report("quality_last_seen"),
                                          {"ids": [w.resource_id for w in ask], "since_ms": since})  # fmt: skip
            found = {r[0]: int(r[1]) for r in rows}
            if len(self._fallback) > 100_000:
                self._fallback.clear()
            for w in ask:
                self._fallback[w.resource_id] = (found.get(w.resource_id), now + FALLBACK_TTL_S)
        return {w.resource_id: self._fallback[w.resource_id][0] for w in missing}

    async def _ended_incidents(self, silences: dict[str, bytes]) -> set[str]:
        """Auto-detected incidents someone already resolved or closed."""
        ids = []
        for raw in silences.values():
            try:
                iid = msgspec.json.decode(raw, type=Silence).incident_id
            except msgspec.DecodeError:
                continue
            if iid:
                ids.append(iid)
        if not ids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for iid in ids:
            pipe.hget(incident_key(iid), "state")
        states = await pipe.execute()
        return {iid for iid, s in zip(ids, states) if s is not None and s.decode() in ("resolved", "closed")}

    async def tick_nodata(self, now_ms: int | None = None) -> list[Outgoing]:
        """One round of silence and outage judgement; returns the messages sent."""
        now_ms = self._now(now_ms)
        watched = watched_of(self.registry)
        silences = await self.signals.load("silence")
        ids = sorted({w.resource_id for w in watched if w.in_service(now_ms)} | set(silences))
        seen = await self.last_seen(ids)
        missing = [w for w in watched if w.in_service(now_ms) and seen.get(w.resource_id) is None
                   and w.resource_id not in silences and now_ms >= w.delivered_ms + w.silent_after_ms(self.policy)]  # fmt: skip
        if missing:
            seen.update({k: v for k, v in (await self._from_store(missing, now_ms)).items() if v is not None})
        ended = await self._ended_incidents(silences)
        changes, _ = judge_silences(now_ms, self.started_ms, watched, seen, silences, self.policy, ended)
        await self.signals.apply(changes)
        # outages from the silences as stored (another worker's compare-and-set may have won)
        stored = {}
        for rid, raw in (await self.signals.load("silence")).items():
            try:
                stored[rid] = msgspec.json.decode(raw, type=Silence)
            except msgspec.DecodeError:
                continue
        outages = await self.signals.load("outage")
        await self.signals.apply(judge_outages(now_ms, watched, stored, outages, self.policy))
        return await self.signals.flush(self.send, now_ms)

    def window(self, now_ms: int) -> tuple[int, int]:
        """The completeness window: whole minutes, ending ``lag_s`` ago (late samples still arrive)."""
        to_ms = (now_ms - int(self.lag_s * 1000)) // 60_000 * 60_000
        return to_ms - self.window_s * 1000, to_ms

    async def tick_quality(self, now_ms: int | None = None) -> list[Outgoing]:
        """Each provider's completeness over the window → ``telemetry_quality`` changes; the messages sent."""
        now_ms = self._now(now_ms)
        if now_ms < self.started_ms + self.policy.startup_grace_s * 1000:
            return []  # an ingest backlog after a start would read as missing samples
        lo, hi = self.window(now_ms)
        rows = await self.store.query(sql.report("quality_recent"), {"from_ms": lo, "to_ms": hi})
        figures = window_completeness(watched_of(self.registry), {r[0]: int(r[1]) for r in rows}, lo, hi)
        states = await self.signals.load("quality")
        await self.signals.apply(judge_quality(now_ms, (lo, hi), figures, states, self.policy))
        return await self.signals.flush(self.send, now_ms)


def policy_of(settings: Any) -> Policy:
    """The judgement's policy from the settings."""
    s = settings
    return Policy(s.nodata_intervals, s.nodata_incident_after_s, s.nodata_incident_severity, s.nodata_startup_grace_s,
                  s.nodata_outage_pct, s.nodata_outage_min_resources, s.quality_low_pct, s.quality_clear_pct)  # fmt: skip


def monitor_of(services: Any) -> QualityMonitor:
    """The process's monitor, created once and kept at ``services.domains['quality']``."""
    mon = services.domains.get("quality")
    if mon is None:
        s = services.settings
        mon = QualityMonitor(services.redis, services.store, services.registry, services.send, policy_of(s),
                             window_s=s.quality_window_s, lag_s=float(s.allowed_lateness_s))  # fmt: skip
        services.domains["quality"] = mon
    return mon


def register(app: Any, services: Any) -> None:
    """The two leader-only timers of the monitor (a timer that raises would stop the Faust app)."""
    mon = monitor_of(services)
    s = services.settings

    @app.timer(interval=s.nodata_tick_s, on_leader=True, name="quality-nodata")
    async def quality_nodata() -> None:
        try:
            await mon.tick_nodata()
        except Exception:  # noqa: BLE001
            log.exception("nodata judgement failed; retrying next tick")

    @app.timer(interval=s.quality_tick_s, on_leader=True, name="quality-completeness")
    async def quality_completeness() -> None:
        try:
            await mon.tick_quality()
        except Exception:  # noqa: BLE001
            log.exception("completeness judgement failed; retrying next tick")
