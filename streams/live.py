"""Live state in Redis: the latest sample and minute of every resource, plus a pub/sub notice.

Keys (all values are set, never added, so a replay rewrites the same state; values are JSON,
written with one MSET per batch — per-key commands cost more than everything else here):
  opscenter:live:res:<resource_id>     {"provider", "ts_ms", "cpu", "mem", "storage"}
  opscenter:live:minute:<resource_id>  the newest closed 1-minute rollup of the resource
  opscenter:live:seq                   int   sequence number of live notices
Channel ``opscenter:live`` carries one JSON notice per processed batch:
  {"type": "telemetry", "seq": n, "ts_ms": t, "resources": [[id, cpu, mem, storage, ts_ms], ...]}
  {"type": "minute", "seq": n, "ts_ms": t, "rollups": [{resource_id, minute_ms, cpu_mean, ...}, ...]}
"""

from __future__ import annotations

from typing import Sequence

import orjson
from redis.asyncio import Redis

from streams.windows import MinuteRollup

CHANNEL = "opscenter:live"
SEQ_KEY = "opscenter:live:seq"
RES_PREFIX = "opscenter:live:res:"
MINUTE_PREFIX = "opscenter:live:minute:"
#: longest list of resources in one pub/sub notice (bigger batches are split)
NOTICE_CHUNK = 2000


class LiveState:
    """Writes live state and publishes notices; one instance per worker."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

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
        """Keep the newest sample per resource (by event time) and announce them."""
        latest: dict[str, tuple[str, int, float, float, float]] = {}
        for rid, pid, t, c, m, s in zip(resource_ids, provider_ids, ts_ms, cpu, mem, storage):
            cur = latest.get(rid)
            if cur is None or t >= cur[1]:
                latest[rid] = (pid, t, c, m, s)
        if not latest:
            return
        values: dict[str, bytes] = {}
        rows = []
        for rid, (pid, t, c, m, s) in latest.items():
            values[RES_PREFIX + rid] = orjson.dumps({"provider": pid, "ts_ms": t, "cpu": c, "mem": m, "storage": s})
            rows.append([rid, round(c, 2), round(m, 2), round(s, 2), t])
        await self.redis.mset(values)
        for i in range(0, len(rows), NOTICE_CHUNK):
            await self._notice({"type": "telemetry", "ts_ms": now_ms, "resources": rows[i : i + NOTICE_CHUNK]})

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
        await self.redis.mset({MINUTE_PREFIX + rid: d for rid, d in zip(newest, docs)})
        for i in range(0, len(docs), NOTICE_CHUNK):
            body = b",".join(docs[i : i + NOTICE_CHUNK])
            await self._notice({"type": "minute", "ts_ms": now_ms, "rollups": orjson.Fragment(b"[" + body + b"]")})

    async def _notice(self, doc: dict) -> None:
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
