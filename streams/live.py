"""Live state in Redis: the latest sample and minute of every resource, plus a pub/sub notice.

Keys (all values are set, never added, so a replay rewrites the same state):
  opscenter:live:res:<resource_id>     hash  cpu, mem, storage, ts_ms, provider
  opscenter:live:minute:<resource_id>  hash  the last closed 1-minute rollup
  opscenter:live:seq                   int   sequence number of live notices
Channel ``opscenter:live`` carries one JSON notice per processed batch:
  {"type": "telemetry", "seq": n, "ts_ms": t, "resources": [[id, cpu, mem, storage, ts_ms], ...]}
  {"type": "minute", "seq": n, "ts_ms": t, "rollups": [{resource_id, minute_ms, cpu_mean, ...}, ...]}
"""

from __future__ import annotations

from dataclasses import asdict
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
        pipe = self.redis.pipeline(transaction=False)
        rows = []
        for rid, (pid, t, c, m, s) in latest.items():
            pipe.hset(RES_PREFIX + rid, mapping={"provider": pid, "ts_ms": t, "cpu": c, "mem": m, "storage": s})
            rows.append([rid, round(c, 2), round(m, 2), round(s, 2), t])
        await pipe.execute()
        for i in range(0, len(rows), NOTICE_CHUNK):
            await self._notice({"type": "telemetry", "ts_ms": now_ms, "resources": rows[i : i + NOTICE_CHUNK]})

    async def publish_minutes(self, rollups: Sequence[MinuteRollup], now_ms: int) -> None:
        if not rollups:
            return
        pipe = self.redis.pipeline(transaction=False)
        docs = []
        for r in rollups:
            doc = asdict(r)
            pipe.hset(MINUTE_PREFIX + r.resource_id, mapping=doc)
            docs.append(doc)
        await pipe.execute()
        for i in range(0, len(docs), NOTICE_CHUNK):
            await self._notice({"type": "minute", "ts_ms": now_ms, "rollups": docs[i : i + NOTICE_CHUNK]})

    async def _notice(self, doc: dict) -> None:
        doc["seq"] = await self.redis.incr(SEQ_KEY)
        await self.redis.publish(CHANNEL, orjson.dumps(doc))


async def latest(redis: Redis, resource_id: str) -> dict[str, str] | None:
    """The live hash of one resource (strings, as Redis returns them), or None."""
    raw = await redis.hgetall(RES_PREFIX + resource_id)
    if not raw:
        return None
    return {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in raw.items()}  # fmt: skip
