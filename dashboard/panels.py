"""Slow wall-screen panels: SLA gauges per provider and pipeline health, computed by the web process.

Unlike the live figures (pushed through Redis), these come from queries: ClickHouse for the SLA
shares, the breaches of the day and the stored samples; a ping of the broker, Redis and
ClickHouse for health. Each web process runs them on a cadence and caches the result for every
screen it serves, so the cost does not grow with the number of clients:

- SLA: every ``sla_every_s`` (30 s), and sooner — but never more than once per ``sla_min_s``
  (5 s) — after an incident changed or an SLA alert fired (the live feed calls
  :meth:`Panels.incidents_changed`).
- Health: every ``health_every_s`` (5 s); the stored-sample rate is the growth of ``count()``
  of ``samples`` over the last ``RATE_WINDOW_S`` (answered from part metadata: cheap at any
  size; a window, not the last poll, because providers send in bursts on their interval grid).

A failed query keeps the last figures (marked by ``sla_ok``) and never stops the feed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import sql
from opscenter.workdays import SHANGHAI

log = logging.getLogger(__name__)

#: seconds behind (now − newest stored sample) above which the pipeline is "lagging"
LAG_WARN_S = 120
#: dead letters are counted over this many minutes
DEADLETTER_WINDOW_MIN = 15
CHECK_TIMEOUT_S = 3.0
RATE_WINDOW_S = 60.0


def day_start_ms(now_ms: int) -> int:
    """Epoch ms of the start of today in Asia/Shanghai."""
    d = datetime.fromtimestamp(now_ms / 1000, SHANGHAI)
    return int(d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def month_bounds_ms(now_ms: int) -> tuple[int, int]:
    """Epoch ms of the start of this month and of the next one, in Asia/Shanghai."""
    d = datetime.fromtimestamp(now_ms / 1000, SHANGHAI).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = d.replace(year=d.year + 1, month=1) if d.month == 12 else d.replace(month=d.month + 1)
    return int(d.timestamp() * 1000), int(nxt.timestamp() * 1000)


def _share(within: int, decided: int) -> float | None:
    return None if decided == 0 else round(within / decided, 4)


def sla_gauges(rows: Iterable[Mapping[str, Any]], breaches: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """Per provider, the month's figures summed over severities (rows of ``sla_provider.sql``
    grouped by month) and today's breaches: the share of *decided* clocks that were within target."""
    acc: dict[str, dict[str, int]] = {}
    keys = ("incidents", "drills", "response_decided", "response_within", "restore_decided", "restore_within")
    for r in rows:
        a = acc.setdefault(str(r["provider_id"]), dict.fromkeys(keys, 0))
        for k in keys:
            a[k] += int(r[k] or 0)
    for pid in breaches:
        acc.setdefault(pid, dict.fromkeys(keys, 0))
    return {
        pid: {
            **a,
            "response_share": _share(a["response_within"], a["response_decided"]),
            "restore_share": _share(a["restore_within"], a["restore_decided"]),
            "breaches_today": int(breaches.get(pid, 0)),
        }
        for pid, a in acc.items()
    }


def _worst(card: Mapping[str, Any]) -> float:
    shares = [v for v in (card.get("response_share"), card.get("restore_share")) if v is not None]
    return min(shares, default=2.0)  # no figures: shown last


def sla_cards(
    ids: Iterable[str], figures: Mapping[str, Mapping[str, Any]], open_incidents: Iterable[tuple[str, str]],
    names: Mapping[str, str], max_cards: int,
) -> tuple[list[dict[str, Any]], int]:
    """One gauge card per provider (``figures`` of :func:`sla_gauges`; open incidents as (provider,
    severity) pairs) and how many were left out: past ``max_cards``, the worst shares are kept."""
    ids = list(ids)
    open_by: dict[str, dict[str, int]] = {pid: dict.fromkeys(("P1", "P2", "P3", "P4"), 0) for pid in ids}
    for pid, sev in open_incidents:
        if pid in open_by and sev in open_by[pid]:
            open_by[pid][sev] += 1
    cards = []
    for pid in ids:
        f = figures.get(pid, {})
        cards.append({
            "id": pid, "name": names.get(pid, pid), "open": open_by[pid],
            "response_share": f.get("response_share"), "restore_share": f.get("restore_share"),
            "incidents": f.get("incidents", 0), "response_decided": f.get("response_decided", 0),
            "restore_decided": f.get("restore_decided", 0), "breaches_today": f.get("breaches_today", 0),
        })  # fmt: skip
    hidden = max(0, len(cards) - max_cards)
    if hidden:
        worst = sorted(cards, key=lambda c: (_worst(c), -sum(c["open"].values()), c["id"]))[:max_cards]
        cards = sorted(worst, key=lambda c: c["id"])
    return cards, hidden


def pipeline_status(checks: Mapping[str, bool], behind_s: float | None) -> tuple[str, list[str]]:
    """``ok`` / ``warn`` / ``down`` and the problems behind it (codes the page translates)."""
    problems = [name for name, ok in checks.items() if not ok]
    if problems:
        return "down", problems
    if behind_s is not None and behind_s > LAG_WARN_S:
        return "warn", ["lag"]
    return "ok", []


async def _ok(coro: Awaitable[Any], timeout_s: float = CHECK_TIMEOUT_S) -> bool:
    try:
        return bool(await asyncio.wait_for(coro, timeout_s))
    except Exception:  # noqa: BLE001 - any failure is "down"
        return False


class Panels:
    """Refreshes the SLA and pipeline panels on a cadence; ``on_change`` is called when they change."""

    def __init__(
        self,
        store: Any,
        redis: Any,
        producer: Any = None,
        sla_every_s: float = 30.0,
        sla_min_s: float = 5.0,
        health_every_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.redis, self.producer = store, redis, producer
        self.sla_every_s, self.sla_min_s, self.health_every_s = sla_every_s, sla_min_s, health_every_s
        self.clock = clock
        self.on_change: Callable[[], None] = lambda: None
        self.sla: dict[str, dict[str, Any]] = {}
        self.sla_ms: int | None = None  # when the SLA figures were computed (None: never)
        self.sla_ok = False
        self.health: dict[str, Any] | None = None
        self._counts: deque[tuple[float, int]] = deque()  # (monotonic s, samples stored) of recent polls
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    @classmethod
    def of(cls, services: Any, **kwargs: Any) -> Panels:
        return cls(services.store, services.redis, services.producer, **kwargs)

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._sla_loop(), name="panels-sla"),
                       asyncio.create_task(self._health_loop(), name="panels-health")]  # fmt: skip

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def incidents_changed(self) -> None:
        """An incident opened, changed or closed, or an SLA signal fired: refresh the SLA figures soon
        (at most once per ``sla_min_s``)."""
        self._dirty.set()

    async def _sla_loop(self) -> None:
        while True:
            started = time.monotonic()
            await self.refresh_sla()
            try:
                await asyncio.wait_for(self._dirty.wait(), self.sla_every_s)
            except TimeoutError:
                pass
            self._dirty.clear()
            await asyncio.sleep(max(0.0, started + self.sla_min_s - time.monotonic()))

    async def _health_loop(self) -> None:
        while True:
            await self.refresh_health()
            await asyncio.sleep(self.health_every_s)

    # -- SLA ----------------------------------------------------------------------------
    async def refresh_sla(self) -> None:
        """This month's SLA shares (Asia/Shanghai, by opening) and today's breaches, per provider."""
        now_ms = int(self.clock() * 1000)
        from_ms, to_ms = month_bounds_ms(now_ms)
        try:
            rows = await self.store.query_dicts(sql.report("sla_provider"), {
                "provider": "", "from_ms": from_ms, "to_ms": to_ms, "group_by": "month", "as_of_ms": now_ms})  # fmt: skip
            breaches = await self.store.query(sql.report("sla_breaches_by_provider"),
                                              {"since_ms": day_start_ms(now_ms), "provider": ""})  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - keep the last figures, say they are old
            if self.sla_ok:
                log.warning("SLA panel not refreshed (%s); showing figures of %s", exc, self.sla_ms)
            self.sla_ok = False
            self.on_change()
            return
        figures = sla_gauges(rows, {pid: n for pid, n in breaches})
        changed = figures != self.sla or not self.sla_ok
        self.sla, self.sla_ms, self.sla_ok = figures, now_ms, True
        if changed:
            self.on_change()

    # -- pipeline health ------------------------------------------------------------------
    async def _broker(self) -> bool:
        if self.producer is None:
            return False
        await self.producer.client.fetch_all_metadata()
        return True

    async def _stored(self) -> tuple[int, int, int]:
        """(samples stored, newest sample ts ms, dead letters of the last minutes)."""
        samples = await self.store.query("SELECT count(), toUnixTimestamp64Milli(max(ts)) FROM samples")
        dead = await self.store.query(
            "SELECT count() FROM deadletters FINAL WHERE ingest_ts >= now64(3) - toIntervalMinute({m:UInt32})",
            {"m": DEADLETTER_WINDOW_MIN},
        )
        return int(samples[0][0]), int(samples[0][1]), int(dead[0][0])

    async def refresh_health(self) -> None:
        """Broker, Redis and ClickHouse up or down; stored samples per second; lag; dead letters."""
        broker, redis_ok = await asyncio.gather(_ok(self._broker()), _ok(self.redis.ping()))
        stored: tuple[int, int, int] | None = None
        try:
            stored = await asyncio.wait_for(self._stored(), CHECK_TIMEOUT_S * 2)
        except Exception as exc:  # noqa: BLE001 - ClickHouse down or slow: say so on the wall
            log.debug("pipeline health: ClickHouse query failed: %s", exc)
        now_s, mono = self.clock(), time.monotonic()
        rate = behind_s = dead = None
        if stored is not None:
            count, newest_ms, dead = stored
            while len(self._counts) > 1 and mono - self._counts[1][0] >= RATE_WINDOW_S:
                self._counts.popleft()  # keep one poll at least a window old, when there is one
            if self._counts and mono - self._counts[0][0] >= 1.0:
                t0, c0 = self._counts[0]
                rate = round(max(0, count - c0) / (mono - t0), 1)  # TTL deletes may shrink the count
            self._counts.append((mono, count))
            behind_s = max(0, round(now_s - newest_ms / 1000)) if count else None
        checks = {"broker": broker, "redis": redis_ok, "clickhouse": stored is not None}
        status, problems = pipeline_status(checks, behind_s)
        health = {
            "status": status, "problems": problems, "checks": checks, "samples_per_s": rate,
            "behind_s": behind_s, "deadletters": dead, "deadletter_window_min": DEADLETTER_WINDOW_MIN,
        }  # fmt: skip
        changed = self.health is None or any(self.health.get(k) != v for k, v in health.items())
        self.health = {**health, "checked_ms": int(now_s * 1000)}
        if changed:
            self.on_change()
