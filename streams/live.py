"""Live state in Redis: the latest sample and minute of every resource, plus a pub/sub notice.

Keys (all values are set, never added, so a replay rewrites the same state; values are JSON,
written with one MSET per batch — per-key commands cost more than everything else here):
  opscenter:live:res:<resource_id>     {"provider", "ts_ms", "cpu", "mem", "storage"}
  opscenter:live:minute:<resource_id>  the newest closed 1-minute rollup of the resource
  opscenter:live:seq                   int   sequence number of live notices
Channel ``opscenter:live`` carries one JSON notice per processed batch:
  {"type": "telemetry", "seq": n, "ts_ms": t, "resources": [[id, cpu, mem, storage, ts_ms], ...]}
  {"type": "minute", "seq": n, "ts_ms": t, "rollups": [{resource_id, minute_ms, cpu_mean, ...}, ...]}

Redis may be down (docs/faults.md): live state is rebuildable, so every write goes through a
:class:`RedisBreaker` that skips it (warning once, ``opscenter_live_errors_total``) instead of
raising into the ingest agent; the next batch after Redis is back writes it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import numpy as np
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from opscenter import metrics
from streams.windows import MinuteRollup

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "opscenter:live"
SEQ_KEY = "opscenter:live:seq"
RES_PREFIX = "opscenter:live:res:"
MINUTE_PREFIX = "opscenter:live:minute:"
#: longest list of resources in one pub/sub notice (bigger batches are split)
NOTICE_CHUNK = 2000


class RedisBreaker:
    """Runs Redis calls a worker can do without; after a failure, skips Redis for ``cooldown_s``.

    redis-py retries a refused connection for seconds before it raises: without the breaker
    every batch would wait that long while Redis is down. After the cool-down one short PING
    decides whether Redis is back.
    """

    def __init__(
        self, redis: Redis, timeout_s: float = 2.0, cooldown_s: float = 2.0, probe_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.redis, self.timeout_s, self.cooldown_s, self.probe_s, self.clock = (
            redis, timeout_s, cooldown_s, probe_s, clock
        )
        self.down_since: float | None = None
        self._retry_at = 0.0

    @property
    def available(self) -> bool:
        return self.down_since is None

    async def call(self, op: str, fn: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        """``(True, result)``, or ``(False, None)`` when Redis is unavailable (counted per ``op``)."""
        if self.down_since is not None:
            if self.clock() < self._retry_at:
                metrics.live_errors.labels(op).inc()
                return False, None
            try:
                await asyncio.wait_for(self.redis.ping(), self.probe_s)
            except (RedisError, OSError):  # (asyncio's TimeoutError is an OSError)
                self._retry_at = self.clock() + self.cooldown_s
                metrics.live_errors.labels(op).inc()
                return False, None
            log.warning("Redis is back after %.1fs: live state is written again", self.clock() - self.down_since)
            self.down_since = None
        try:
            return True, await asyncio.wait_for(fn(), self.timeout_s)
        except (RedisError, OSError) as exc:
            now = self.clock()
            self.down_since, self._retry_at = now, now + self.cooldown_s
            metrics.live_errors.labels(op).inc()
            log.warning(
                "Redis unavailable (%s: %r): live state is not written and batch ids are not checked "
                "until it is back; samples are still stored in ClickHouse", op, exc,
            )  # fmt: skip
            return False, None


class LiveState:
    """Writes live state and publishes notices; one instance per worker."""

    def __init__(self, redis: Redis, breaker: RedisBreaker | None = None) -> None:
        self.redis = redis
        self.breaker = breaker if breaker is not None else RedisBreaker(redis)

    async def publish_latest(
        self,
        resource_ids: Sequence[str],
        provider_ids: Sequence[str],
        ts_ms: Sequence[int],
        cpu: Sequence[float],
        mem: Sequence[float],
        storage: Sequence[float],
        now_ms: int,
    ) -> None:
        """Keep the newest sample per resource (by event time; of equal times the later) and announce them."""
        if not len(resource_ids):
            return
        # by event time, stably: the last index of a resource in this order is its newest sample
        order = np.argsort(np.asarray(ts_ms, dtype=np.int64), kind="stable").tolist()
        newest = dict(zip(map(resource_ids.__getitem__, order), order))
        values: dict[str, bytes] = {}
        rows = []
        for rid, i in newest.items():
            pid, t, c, m, s = provider_ids[i], int(ts_ms[i]), float(cpu[i]), float(mem[i]), float(storage[i])
            values[RES_PREFIX + rid] = orjson.dumps({"provider": pid, "ts_ms": t, "cpu": c, "mem": m, "storage": s})
            rows.append([rid, round(c, 2), round(m, 2), round(s, 2), t])

        async def write() -> None:
            await self.redis.mset(values)
            for i in range(0, len(rows), NOTICE_CHUNK):
                await self._notice({"type": "telemetry", "ts_ms": now_ms, "resources": rows[i : i + NOTICE_CHUNK]})

        await self.breaker.call("latest", write)

    async def publish_minutes(self, rollups: Sequence[MinuteRollup], now_ms: int) -> None:
        """Publish the newest closed minute of each resource (older ones, e.g. a backfill's, are stored
        in ClickHouse by the rollup views and are not live news)."""
        newest: dict[str, MinuteRollup] = {}
        for r in rollups:
            cur = newest.get(r.resource_id)
            if cur is None or r.minute_ms > cur.minute_ms:
                newest[r.resource_id] = r
        if not newest:
            return
        docs = [orjson.dumps(r) for r in newest.values()]  # orjson serialises dataclasses natively

        async def write() -> None:
            await self.redis.mset({MINUTE_PREFIX + rid: d for rid, d in zip(newest, docs)})
            for i in range(0, len(docs), NOTICE_CHUNK):
                body = b",".join(docs[i : i + NOTICE_CHUNK])
                await self._notice({"type": "minute", "ts_ms": now_ms, "rollups": orjson.Fragment(b"[" + body + b"]")})

        await self.breaker.call("minutes", write)

    async def _notice(self, doc: dict[str, Any]) -> None:
        doc["seq"] = await self.redis.incr(SEQ_KEY)
        await self.redis.publish(CHANNEL, orjson.dumps(doc))


async def latest(redis: Redis, resource_id: str) -> dict | None:
    """The live value of one resource, or None."""
    raw = await redis.get(RES_PREFIX + resource_id)
    return None if raw is None else orjson.loads(raw)


async def latest_minute(redis: Redis, resource_id: str) -> dict | None:
    """The newest closed 1-minute rollup of one resource, or None."""
    raw = await redis.get(MINUTE_PREFIX + resource_id)
    return None if raw is None else orjson.loads(raw)


async def follow(
    redis: Redis,
    channels: Sequence[str],
    on_message: Callable[[str, bytes], None],
    on_reconnect: Callable[[], Awaitable[object]] | None = None,
    name: str = "follower",
) -> None:
    """Subscribe to ``channels`` and hand every message to ``on_message(channel, data)``, forever.

    Survives Redis restarts: after a lost connection it waits a second, runs ``on_reconnect``
    (read back what was missed) and subscribes again. Cancel the task to stop it.
    """
    import asyncio
    import logging

    log = logging.getLogger(__name__)
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(*channels)
            async for msg in pubsub.listen():
                if msg.get("type") == "message":
                    ch = msg["channel"]
                    on_message(ch.decode() if isinstance(ch, bytes) else ch, msg["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Redis gone: retry, and read what we missed
            log.warning("%s lost Redis (%s); resubscribing", name, exc)
            await asyncio.sleep(1.0)
            if on_reconnect is not None:
                try:
                    await on_reconnect()
                except Exception:  # noqa: BLE001 - the next reconnect tries again
                    pass
        finally:
            try:
                await pubsub.aclose()
            except Exception:  # noqa: BLE001
                pass

