"""The alert service: the pure engine over Redis state, the outbox, the notify stage and ClickHouse.

Used by the agent (events, timers) and the API (acknowledge, resolve, silences, periods). Every
change runs under one Redis lock: load the state if another process changed it, apply a pure
engine function, write the changed entries, the timers, the outbox and the transitions in one
MULTI, then publish and deliver. A crash after the MULTI loses nothing: the outbox is replayed
at start; a crash before it is a Kafka redelivery, and applied event ids are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from alerts import engine, persist
from alerts.assurance import AssurancePeriod
from alerts.config import Config, load_calendar, load_config
from alerts.engine import EngineState, Output
from alerts.grouping import group_key
from alerts.model import Observation
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.webhook import WebhookNotifier
from alerts.notify import Delivery, NotifyStage
from alerts.silences import Silence

log = logging.getLogger(__name__)

EngineFn = Callable[[EngineState, int], tuple[EngineState, Output]]
OUTBOX_REPLAY_AFTER_MS = 60_000
#: transitions moved to ClickHouse per insert: an alert storm opens thousands at once, and every
#: insert waits its turn on the same ClickHouse (with chDB: behind the telemetry inserts)
TRANSITIONS_PER_INSERT = 5000


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class AlertService:
    """One per process; safe to use from several processes at once (Redis lock)."""

    def __init__(self, redis: Redis, store: Any, config: Config, *, calendar: Iterable[AssurancePeriod] = (),
                 clock: Callable[[], int] | None = None, webhook: Any = None, email: Any = None) -> None:  # fmt: skip
        self.redis = redis
        self.store = store
        self.config = config
        self.calendar = tuple(calendar)
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.state = EngineState()
        self.version = -1
        self.webhook = webhook or WebhookNotifier()
        self.stage = NotifyStage(
            self.webhook, email or EmailNotifier(config.smtp), on_result=self._record_delivery
        )
        #: org id → (Chinese name, English name) from ClickHouse ``orgs``, for provider-level
        #: summaries (:meth:`refresh_names`; empty until loaded: summaries fall back to the id)
        self.names: dict[str, tuple[str, str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._start_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Rebuild from ClickHouse if Redis lost the state, seed the calendar, replay the outbox."""
        async with self._start_lock:
            if self._started:
                return
            if not await self.redis.exists(persist.VERSION):
                await self._rebuild()
            # calendar-file periods are seeded once each: one deleted through the API stays deleted
            for p in self.calendar:
                if await self.redis.sadd(persist.PREFIX + "calendar_seeded", p.id):
                    await self.mutate(lambda s, now, p=p: engine.put_period(s, p, now, self.config))
            await self._replay_outbox()
            self._started = True

    async def aclose(self) -> None:
        """Stop background deliveries and close HTTP sessions."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.webhook.aclose()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for background deliveries and sinks (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- state --------------------------------------------------------------------
    async def _load(self) -> EngineState:
        return (await self._load_both())[1]

    async def _load_both(self) -> tuple[EngineState, EngineState]:
        """(the state as Redis holds it, the state to work from).

        They differ only when Redis lost the state while this process ran (Valkey restarted
        without persistence): Redis holds nothing, and the state to work from is rebuilt from
        ClickHouse; the next write stores all of it again.
        """
        raw = await self.redis.get(persist.VERSION)
        if raw is None and self._started:
            log.warning("alert state missing in Redis (restarted without persistence?): rebuilding from ClickHouse")
            return EngineState(), await self._rebuilt_state()
        version = int(raw or 0)
        if version != self.version:
            self.state, self.version = await persist.load(self.redis)
        return self.state, self.state

    async def mutate(
        self, fn: EngineFn, *, seen: Iterable[str] = (), clear_timers: bool = False
    ) -> Output:
        """Apply ``fn`` to the current state under the lock and persist the result; then deliver."""
        async with self.redis.lock(persist.LOCK, timeout=30, blocking_timeout=60):
            stored, old = await self._load_both()
            now = self.clock()
            new, out = fn(old, now)
            if stored is not old:  # rebuilt: let the engine's tick reschedule every timer
                out.wakes.add(now)
            pipe = self.redis.pipeline(transaction=True)
            persist.write_diff(pipe, stored, new)
            if clear_timers:
                pipe.zremrangebyscore(persist.TIMERS, "-inf", now)
            if out.wakes:
                pipe.zadd(persist.TIMERS, {str(w): w for w in out.wakes})
            for n in out.notices:
                pipe.hset(
                    persist.OUTBOX, n.id, orjson.dumps({"created_ms": now, "doc": n.message()})
                )
            if out.transitions:
                pipe.rpush(persist.TRANSITIONS, *(persist.encode(t) for t in out.transitions))
            for event_id in seen:
                pipe.set(persist.PREFIX + "seen:" + event_id, b"1", ex=persist.SEEN_TTL_S)
            pipe.incr(persist.VERSION)
            res = await pipe.execute()
            self.state, self.version = new, int(res[-1])
        for n in out.notices:
            self._spawn(self._dispatch(n.message()))
        if out.transitions:
            self._spawn(self.flush_transitions())
        return out

    async def refresh_names(self) -> None:
        """Load the display names of providers, units and districts (``orgs``) for summaries.

        Run in the background (the agent's ``alert_names`` task): an alert never waits for
        ClickHouse, it is named by id until the names are loaded.
        """
        rows = await self.store.query(
            "SELECT org_id, argMax(name_zh, version), argMax(name_en, version) FROM orgs GROUP BY org_id"
        )
        self.names = {org_id: (zh, en) for org_id, zh, en in rows}

    def named(self, obs: Observation) -> Observation:
        """The observation with its provider's names as ``data.provider_name_zh`` / ``_en``, if known."""
        names = self.names.get(obs.labels.get("provider", ""))
        if names is None or "provider_name_zh" in obs.data:
            return obs
        return replace(obs, data={**obs.data, "provider_name_zh": names[0], "provider_name_en": names[1] or names[0]})

    async def observe(self, observations: list[Observation]) -> Output:
        """Evaluate observations in order (events already applied once are skipped)."""
        ids = [o.event_id for o in observations if o.event_id]
        if ids:
            flags = await self.redis.mget([persist.PREFIX + "seen:" + i for i in ids])
            done = {i for i, f in zip(ids, flags) if f}
            observations = [o for o in observations if not o.event_id or o.event_id not in done]
        if not observations:
            return Output()
        if self.names:
            observations = [self.named(o) for o in observations]

        def apply(state: EngineState, now: int) -> tuple[EngineState, Output]:
            return engine.observe_many(state, observations, now, self.config)

        return await self.mutate(apply, seen=[o.event_id for o in observations if o.event_id])

    async def fire_due(self) -> Output | None:
        """Run the engine's tick if any timer is due (called by the Faust timer)."""
        now = self.clock()
        if not await self.redis.zrangebyscore(persist.TIMERS, "-inf", now, start=0, num=1):
            return None
        return await self.mutate(lambda s, t: engine.tick(s, t, self.config), clear_timers=True)

    async def snapshot(self) -> EngineState:
        """The current state (reloaded if another process changed it; rebuilt and stored again
        if Redis lost it)."""
        if self._started and not await self.redis.exists(persist.VERSION):
            await self.mutate(lambda s, now: (s, Output()))  # rebuilds (once) and stores
            return self.state
        return await self._load()

    # --- operations for the API ------------------------------------------------------
    async def acknowledge(self, ident: str, actor: str, comment: str) -> Output:
        """Acknowledge an alert by fingerprint or alert id."""
        return await self.mutate(
            lambda s, now: engine.acknowledge(s, ident, actor, comment, now, self.config)
        )

    async def resolve(self, ident: str, actor: str, reason: str) -> Output:
        """Resolve an alert by hand."""
        return await self.mutate(
            lambda s, now: engine.resolve(s, ident, actor, reason, now, self.config)
        )

    async def put_silence(self, silence: Silence, actor: str) -> None:
        """Create or replace a silence and record it (who, why) in ClickHouse."""
        await self.mutate(lambda s, now: engine.put_silence(s, silence, now, self.config))
        await self._record_silence(silence, actor)

    async def expire_silence(self, silence_id: str, actor: str) -> Silence | None:
        """End a silence now; returns it (None if unknown)."""
        await self.mutate(lambda s, now: engine.expire_silence(s, silence_id, now, self.config))
        sil = self.state.silences.get(silence_id)
        if sil is not None:
            await self._record_silence(sil, actor)
        return sil

    async def put_period(self, period: AssurancePeriod, actor: str) -> None:
        """Create or replace an assurance period (recorded in ClickHouse)."""
        await self.mutate(lambda s, now: engine.put_period(s, period, now, self.config))
        await self._record_period(period, actor, deleted=False)

    async def delete_period(self, period_id: str, actor: str) -> AssurancePeriod | None:
        """Remove an assurance period; returns it (None if unknown)."""
        cur = (await self.snapshot()).periods.get(period_id)
        if cur is None:
            return None
        await self.mutate(lambda s, now: engine.delete_period(s, period_id, now, self.config))
        await self._record_period(cur, actor, deleted=True)
        return cur

    def reload(self, path: str | None = None) -> Config:
        """Re-read and validate the rule file; the running config changes only if it is valid."""
        config = load_config(path or self.config.path)
        self.config = config
        self.stage.email = (
            EmailNotifier(config.smtp)
            if isinstance(self.stage.email, EmailNotifier)
            else self.stage.email
        )
        return config

    # --- delivery -----------------------------------------------------------------
    async def _dispatch(self, doc: dict[str, Any]) -> None:
        """Publish on the console channel, deliver to receivers, then clear the outbox entry."""
        try:
            await self.redis.publish(persist.CHANNEL, orjson.dumps(doc))
            if doc.get("receivers"):
                await self.stage.deliver(doc, self.config)
            await self.redis.hdel(persist.OUTBOX, doc["id"])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dispatching alert notice %s failed", doc.get("id"))

    async def _replay_outbox(self) -> None:
        now = self.clock()
        for raw in (await self.redis.hgetall(persist.OUTBOX)).values():
            item = orjson.loads(raw)
            if now - item["created_ms"] >= OUTBOX_REPLAY_AFTER_MS:
                log.warning("replaying undelivered alert notice %s", item["doc"]["id"])
                self._spawn(self._dispatch(item["doc"]))

    async def _record_delivery(self, d: Delivery) -> None:
        await self.store.insert_retrying(
            "alert_deliveries",
            [
                [d.notice_id],
                [d.receiver],
                [d.channel],
                [d.target],
                [d.status],
                [d.tries],
                [d.error],
                [_dt(d.at_ms)],
            ],
            ["notice_id", "receiver", "channel", "target", "status", "tries", "error", "at"],
        )

    async def flush_transitions(self) -> None:
        """Move recorded transitions from the Redis list into ClickHouse ``alert_transitions``."""
        async with self._flush_lock:
            while True:
                raw = await self.redis.lrange(persist.TRANSITIONS, 0, TRANSITIONS_PER_INSERT - 1)
                if not raw:
                    return
                rows = [persist.transition_row(persist.decode_transition(r)) for r in raw]
                await self.store.insert_retrying("alert_transitions", list(map(list, zip(*rows))),
                                                 persist.TRANSITION_COLUMNS)  # fmt: skip
                await self.redis.ltrim(persist.TRANSITIONS, len(raw), -1)

    async def _record_silence(self, s: Silence, actor: str) -> None:
        cols = [[s.id], [[str(m) for m in s.matchers]], [_dt(s.starts_ms)], [_dt(s.ends_ms)], [s.created_by],
                [s.comment], [_dt(s.created_ms)], [_dt(max(s.updated_ms, s.created_ms, self.clock()))], [actor]]  # fmt: skip
        await self.store.insert_retrying("alert_silences", cols, ["id", "matchers", "starts_at", "ends_at", "created_by",
                                         "comment", "created_at", "updated_at", "updated_by"])  # fmt: skip

    async def _record_period(self, p: AssurancePeriod, actor: str, deleted: bool) -> None:
        cols = [[p.id], [p.name_zh], [p.name_en], [p.kind], [_dt(p.starts_ms)], [_dt(p.ends_ms)], [int(deleted)],
                [_dt(self.clock())], [actor]]  # fmt: skip
        await self.store.insert_retrying("assurance_periods", cols, ["id", "name_zh", "name_en", "kind", "starts_at",
                                         "ends_at", "deleted", "updated_at", "updated_by"])  # fmt: skip

    async def _rebuild(self) -> None:
        """Redis has no alert state (new or flushed): rebuild silences, periods and open alerts from ClickHouse."""
        state = await self._rebuilt_state()

        def seed(s: EngineState, now: int) -> tuple[EngineState, Output]:
            return state, Output(wakes={now})

        await self.mutate(seed)

    async def _rebuilt_state(self) -> EngineState:
        """Silences, assurance periods and open alerts as recorded in ClickHouse."""
        from alerts.model import Matcher

        sil_rows = await self.store.query_dicts(
            "SELECT id, matchers, toUnixTimestamp64Milli(starts_at) AS s, toUnixTimestamp64Milli(ends_at) AS e, "
            "created_by, comment, toUnixTimestamp64Milli(created_at) AS c FROM alert_silences FINAL"
        )
        per_rows = await self.store.query_dicts(
            "SELECT id, name_zh, name_en, kind, toUnixTimestamp64Milli(starts_at) AS s, "
            "toUnixTimestamp64Milli(ends_at) AS e FROM assurance_periods FINAL WHERE deleted = 0"
        )
        alert_rows = await self.store.query_dicts(
            "SELECT alert_id, argMax(fingerprint, seq) AS l_fingerprint, argMax(rule, seq) AS l_rule, "
            "max(seq) AS l_seq, argMax(to_state, seq) AS l_state, argMax(severity, seq) AS l_severity, "
            "argMax(labels, seq) AS l_labels, argMax(actor, seq) AS l_actor, argMax(reason, seq) AS l_reason, "
            "argMax(summary_zh, seq) AS l_summary_zh, argMax(summary_en, seq) AS l_summary_en, "
            "toUnixTimestamp64Milli(max(at)) AS l_at_ms, toUnixTimestamp64Milli(min(at)) AS l_started_ms "
            "FROM alert_transitions FINAL GROUP BY alert_id"
        )
        silences = {r["id"]: Silence(r["id"], tuple(Matcher.parse(m) for m in r["matchers"]), int(r["s"]), int(r["e"]),
                                     r["created_by"], r["comment"], int(r["c"])) for r in sil_rows}  # fmt: skip
        periods = {r["id"]: AssurancePeriod(r["id"], r["name_zh"], r["name_en"], int(r["s"]), int(r["e"]), r["kind"])
                   for r in per_rows}  # fmt: skip
        alerts = persist.open_alerts_from_rows(alert_rows)
        by_name = {r.name: r for r in self.config.rules}
        for fp, a in list(alerts.items()):
            rule = by_name.get(a.rule)
            if rule is not None:
                alerts[fp] = replace(a, group_key=group_key(rule.group_by, a.labels),
                                     repeat_interval_s=rule.repeat_interval_s)  # fmt: skip
        if silences or periods or alerts:
            log.warning("alert state rebuilt from ClickHouse: %d open alerts, %d silences, %d periods",
                        len(alerts), len(silences), len(periods))  # fmt: skip
        return EngineState(alerts=alerts, silences=silences, periods=periods)


def from_services(services: Any, config: Config | None = None) -> AlertService:
    """The process's alert service, created once and kept at ``services.domains['alerts']``."""
    svc = services.domains.get("alerts")
    if svc is None:
        path = getattr(services.settings, "alerts_rules_path", None)
        cal = getattr(services.settings, "alerts_calendar_path", None)
        config = config or (load_config(path) if path else load_config())
        svc = AlertService(
            services.redis,
            services.store,
            config,
            calendar=load_calendar(cal) if cal else load_calendar(),
        )
        services.domains["alerts"] = svc
    return svc
