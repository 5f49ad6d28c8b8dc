"""Utilization domain (§29–§31): rolling windows and bands, right-sizing, declarations; Faust timer and agent.

The windows are computed by ClickHouse over the rollups (``sql/reports/util_window_*.sql``):
the 1 h window from ``rollup_1m`` (exact p95), 24 h and 7 d from ``rollup_1h`` (t-digest). The
worker keeps only the latest figures per resource. Redis keys (values JSON unless noted):
  opscenter:util:bands:<window>    hash "<resource>|<metric>" -> "band|since_ms|value" (text)
  opscenter:util:figures:<window>  hash resource -> figures of the window
  opscenter:util:agg:<window>      hash "unit:<id>" / "district:<id>" -> capacity-weighted aggregate
  opscenter:util:meta              hash window -> ms of the last refresh
Channel ``opscenter:util`` carries ``{"type": "utilization", "window", "ts_ms", "transitions"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import msgspec
import orjson

import sql
from opscenter.inventory import SUPERVISED_STATES, Resource
from opscenter.wire import TOPIC_DEADLETTER, TOPIC_DECLARATIONS, TOPIC_EVENTS, json_encoder
from streams import declarations as decl
from streams.bands import (
    METRICS, WINDOW_S, AssuranceHook, BandPolicy, BandState, Transition, WindowFigures, band_event,
    capacity_weighted, figures_from_row, policy_at, step,
)  # fmt: skip
from streams.ingest import Message, dead_letter
from streams.rightsizing import (
    HOUR_MS, DecisionError, Recommendation, SizingPolicy, approve, expand_proposals, gate,
    mark_applied, propose, reject, shrink_proposals,
)  # fmt: skip
from streams.validation import Reject

log = logging.getLogger(__name__)

BANDS_KEY = "opscenter:util:bands:"
FIGURES_KEY = "opscenter:util:figures:"
AGG_KEY = "opscenter:util:agg:"
META_KEY = "opscenter:util:meta"
CHANNEL = "opscenter:util"
WINDOW_SQL = {"1h": "util_window_minutes", "24h": "util_window_hours", "7d": "util_window_hours"}
REC_COLUMNS = (
    "rec_id", "resource_id", "provider_id", "unit_id", "district_id", "metric", "direction", "status",
    "current_size", "target_size", "size_unit", "p95_pct", "target_pct", "evidence", "proposed_at",
    "decided_at", "decided_by", "reason", "applied_at", "applied_event_id", "version",
)  # fmt: skip
LOG_COLUMNS = ("rec_id", "action", "actor", "reason", "ts", "status_from", "status_to", "detail")
SEND_CHUNK = 500
DEFAULT_POLICY = BandPolicy()
DEFAULT_SIZING = SizingPolicy()


def _utc(v: Any) -> datetime | None:
    if not isinstance(v, datetime):
        return None
    return v if v.tzinfo else v.replace(tzinfo=timezone.utc)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


# ------------------------------------------------------------------------------ store access


async def window_figures(
    store: Any, window: str, now_ms: int, resources: Sequence[str] | None = None
) -> list[WindowFigures]:
    """Figures of ``window`` ending at ``now_ms`` for every resource with data (or those listed)."""
    params = {"from_ms": now_ms - WINDOW_S[window] * 1000, "to_ms": now_ms, "all": int(resources is None),
              "resources": list(resources or [])}  # fmt: skip
    rows = await store.query_dicts(sql.report(WINDOW_SQL[window]), params)
    return [figures_from_row(window, r) for r in rows]


def rec_from_row(r: dict[str, Any]) -> Recommendation:
    """A :class:`Recommendation` from a ``recommendations`` row."""
    return Recommendation(
        r["rec_id"], r["resource_id"], r["provider_id"], r["unit_id"], r["district_id"], r["metric"],
        r["direction"], r["status"], int(r["current_size"]), int(r["target_size"]), r["size_unit"],
        float(r["p95_pct"]), float(r["target_pct"]), orjson.loads(r["evidence"] or "{}"),
        _utc(r["proposed_at"]), _utc(r["decided_at"]), r["decided_by"], r["reason"],  # type: ignore[arg-type]
        _utc(r["applied_at"]), r["applied_event_id"],
    )  # fmt: skip


def rec_doc(r: Recommendation) -> dict[str, Any]:
    """JSON-ready form of a recommendation (times as ISO 8601)."""
    out: dict[str, Any] = {k: getattr(r, k) for k in REC_COLUMNS if k != "version"}
    for k in ("proposed_at", "decided_at", "applied_at"):
        out[k] = out[k].isoformat() if out[k] is not None else None
    return out


async def load_recommendations(store: Any, **filters: Any) -> list[Recommendation]:
    """Recommendations in their current status; filters as in ``util_recommendations.sql``."""
    params = {k: filters.get(k, "") for k in ("rec_id", "status", "metric", "direction", "resource_id",
                                               "unit_id", "district_id", "provider_id")}  # fmt: skip
    params["limit"] = int(filters.get("limit", 10_000))
    rows = await store.query_dicts(sql.report("util_recommendations"), params)
    return [rec_from_row(r) for r in rows]


async def save_recommendations(
    store: Any, recs: Sequence[Recommendation], actor: str, previous: dict[str, str]
) -> None:
    """Write the new status of each recommendation and its log row (who, when, why)."""
    if not recs:
        return
    rows: list[list[Any]] = []
    logs: list[list[Any]] = []
    for r in recs:
        when = {"proposed": r.proposed_at, "applied": r.applied_at}.get(r.status) or r.decided_at or r.proposed_at
        version = time.time_ns() + len(rows)
        rows.append([r.rec_id, r.resource_id, r.provider_id, r.unit_id, r.district_id, r.metric, r.direction,
                     r.status, r.current_size, r.target_size, r.size_unit, r.p95_pct, r.target_pct,
                     orjson.dumps(r.evidence).decode(), r.proposed_at, r.decided_at, r.decided_by, r.reason,
                     r.applied_at, r.applied_event_id, version])  # fmt: skip
        detail = orjson.dumps({"target_size": r.target_size, "current_size": r.current_size, **r.extra}).decode()
        logs.append([r.rec_id, r.status, actor, r.reason if r.status != "applied" else "", when,
                     previous.get(r.rec_id, ""), r.status, detail])  # fmt: skip
    await store.insert_retrying("recommendations", list(zip(*rows)), REC_COLUMNS)
    await store.insert_retrying("recommendation_log", list(zip(*logs)), LOG_COLUMNS)


async def decide(services: Any, rec_id: str, action: str, actor: str, reason: str, now: datetime) -> Recommendation:
    """Approve or reject one recommendation (raises :class:`DecisionError`); recorded with who and when."""
    lock = f"opscenter:util:lock:{rec_id}"
    if not await services.redis.set(lock, actor or "-", nx=True, ex=30):
        raise DecisionError("busy", "该建议正在被处理，请稍后重试", "someone is deciding this recommendation; retry")
    try:
        found = await load_recommendations(services.store, rec_id=rec_id, limit=1)
        if not found:
            raise DecisionError("not_found", "建议不存在", f"no recommendation {rec_id!r}")
        rec = found[0]
        if action == "approve":
            new = approve(rec, actor, now, reason)
        elif action == "reject":
            new = reject(rec, actor, reason, now)
        else:
            raise DecisionError("bad_action", "未知操作", f"action is approve or reject, not {action!r}")
        await save_recommendations(services.store, [new], actor, {rec_id: rec.status})
        return new
    finally:
        await services.redis.delete(lock)


async def load_declarations(store: Any) -> list[decl.Declaration]:
    """Every current (not withdrawn) declaration."""
    rows = await store.query_dicts(f"SELECT {', '.join(decl.COLUMNS)} FROM declarations FINAL WHERE withdrawn = 0")
    return [decl.from_row(r) for r in rows]


# ------------------------------------------------------------------------------ the stage


class UtilizationStage:
    """Refreshes windows and bands, emits band changes, proposes recommendations, tracks adjustments."""

    def __init__(
        self,
        services: Any,
        *,
        tick_s: float = 5.0,
        short_refresh_s: float = 60.0,
        long_refresh_s: float = 300.0,
        policy: BandPolicy = DEFAULT_POLICY,
        assurance: AssuranceHook | None = None,
        sizing: SizingPolicy = DEFAULT_SIZING,
        band_stat: str = "p95",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.services = services
        self.tick_s, self.short_refresh_s, self.long_refresh_s = tick_s, short_refresh_s, long_refresh_s
        self.policy, self.assurance, self.sizing, self.band_stat = policy, assurance, sizing, band_stat
        self.clock = clock  # the wall clock windows end at (a test passes a fixed one)
        self.latest: dict[str, dict[str, WindowFigures]] = {}  # window -> resource -> figures
        self._latest_ms: dict[str, int] = {}  # window -> the ``now`` its figures end at
        self._due: dict[str, float] = {}  # "short" / "long" -> monotonic time of the next run
        self.declarations = DeclarationStage(services)

    # -- schedule --------------------------------------------------------------------------
    async def tick(self) -> None:
        """Run whatever is due: the 1 h window and the adjustment check; 24 h, 7 d and right-sizing."""
        mono = time.monotonic()
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        if mono >= self._due.get("short", 0.0):
            self._due["short"] = mono + self.short_refresh_s
            await self.refresh("1h", now)
            await self.check_applied(now)
        if mono >= self._due.get("long", 0.0):
            self._due["long"] = mono + self.long_refresh_s
            await self.refresh("24h", now)
            await self.refresh("7d", now)
            await self.evaluate(now)

    def _supervised(self, resource_id: str) -> Resource | None:
        res = self.services.registry.get(resource_id)
        return res if res is not None and res.state in SUPERVISED_STATES else None

    # -- windows and bands -----------------------------------------------------------------
    async def refresh(self, window: str, now: datetime) -> list[Transition]:
        """Recompute one window for every resource, publish its figures, emit its band changes."""
        now_ms = _ms(now)
        rows = await window_figures(self.services.store, window, now_ms)
        figures = [f for f in rows if self._supervised(f.resource_id)]
        self.latest[window] = {f.resource_id: f for f in figures}
        self._latest_ms[window] = now_ms
        policy = policy_at(now, self.policy, self.assurance)
        redis = self.services.redis
        raw = await redis.hgetall(BANDS_KEY + window)
        states: dict[str, BandState] = {}
        for k, v in raw.items():
            band, since, _ = (v.decode() if isinstance(v, bytes) else v).split("|")
            states[k.decode() if isinstance(k, bytes) else k] = BandState(band, int(since))
        current: dict[str, str] = {}
        transitions: list[Transition] = []
        for f in figures:
            for metric in METRICS:
                key = f"{f.resource_id}|{metric}"
                value = f.stat(metric, self.band_stat)
                new, tr = step(f.resource_id, metric, window, value, states.get(key), policy.thresholds(metric), now_ms)
                current[key] = f"{new.band}|{new.since_ms}|{value:.3f}"  # the value is refreshed every time
                if tr is not None:
                    transitions.append(tr)
        # a resource without data in the window has no band (nodata is the alerting's business)
        gone = [k for k in states if k.split("|", 1)[0] not in self.latest[window]]
        await self._emit(transitions)  # first the events, then the state: a crash re-emits the same ids
        pipe = redis.pipeline(transaction=True)
        if current:
            pipe.hset(BANDS_KEY + window, mapping=current)
        if gone:
            pipe.hdel(BANDS_KEY + window, *gone)
        pipe.delete(FIGURES_KEY + window, AGG_KEY + window)
        docs = {f.resource_id: orjson.dumps({"resource_id": f.resource_id, "window": window, "ts_ms": now_ms,
                                             **f.doc()}) for f in figures}  # fmt: skip
        if docs:
            pipe.hset(FIGURES_KEY + window, mapping=docs)
        aggs: dict[str, bytes] = {}
        for level in ("unit", "district"):
            for (gid, _), agg in capacity_weighted(figures, self._supervised, level).items():
                aggs[f"{level}:{gid}"] = orjson.dumps({**agg.doc(policy), "ts_ms": now_ms})
        if aggs:
            pipe.hset(AGG_KEY + window, mapping=aggs)
        pipe.hset(META_KEY, window, now_ms)
        pipe.publish(CHANNEL, orjson.dumps({"type": "utilization", "window": window, "ts_ms": now_ms,
                                            "transitions": len(transitions)}))  # fmt: skip
        await pipe.execute()
        return transitions

    async def _emit(self, transitions: Sequence[Transition]) -> None:
        send = self.services.send
        for i in range(0, len(transitions), SEND_CHUNK):
            chunk = transitions[i : i + SEND_CHUNK]
            events = [band_event(t, self._supervised(t.resource_id)) for t in chunk]
            await asyncio.gather(*(send(TOPIC_EVENTS, e.subject.encode(), json_encoder.encode(e)) for e in events))

    # -- right-sizing ----------------------------------------------------------------------
    async def evaluate(self, now: datetime) -> list[Recommendation]:
        """Propose the recommendations the evidence supports at ``now``; return the new ones."""
        store, sizing = self.services.store, self.sizing
        now_ms = _ms(now)
        from_ms = now_ms - sizing.shrink_window_s * 1000
        this_hour = now_ms - now_ms % HOUR_MS
        hours_from = this_hour - sizing.expand_hours * HOUR_MS
        figs = None
        if sizing.shrink_window_s == WINDOW_S["7d"] and self._latest_ms.get("7d") == now_ms:
            figs = self.latest["7d"]  # just refreshed for this very instant
        if figs is None:
            figs = {f.resource_id: f for f in await self._shrink_window(now_ms)}
        decls = await load_declarations(store)
        adjusted = {r: int(ms) for r, ms in await store.query(
            "SELECT resource_id, toInt64(toUnixTimestamp64Milli(max(ts))) FROM lifecycle_events "
            "WHERE type = 'adjusted' AND ts >= fromUnixTimestamp64Milli({from_ms:Int64}) GROUP BY resource_id",
            {"from_ms": from_ms})}  # fmt: skip
        hourly: dict[str, dict[int, dict[str, float]]] = {}
        for r in await store.query_dicts(sql.report("util_hourly"), {"from_ms": hours_from, "to_ms": this_hour}):
            if r["sample_count"] > 0:
                hourly.setdefault(r["resource_id"], {})[int(r["hour_ms"])] = {
                    "cpu": r["cpu_p95"], "memory": r["mem_p95"], "storage": r["storage_p95"]}
        first_hour = -(-from_ms // HOUR_MS) * HOUR_MS  # hour buckets of the window start at or after from_ms
        proposals = []
        for rid in sorted(set(figs) | set(hourly)):
            res = self._supervised(rid)
            if res is None:
                continue
            fig = figs.get(rid)
            if fig is not None:
                excluded = decl.declared_hours(decls, rid, res.unit_id, first_hour, now_ms)
                if excluded:
                    fig = await self._excluding(rid, from_ms, now_ms, excluded)
                if fig is not None:
                    proposals += shrink_proposals(res, fig, from_ms, now_ms, len(excluded), sizing, adjusted.get(rid))
            if rid in hourly:
                declared = decl.declared_hours(decls, rid, res.unit_id, hours_from, this_hour)
                proposals += expand_proposals(res, hourly[rid], declared, now_ms, sizing, adjusted.get(rid))
        if not proposals:
            return []
        rows = await store.query_dicts(sql.report("util_recommendations_blocking"),
                                       {"since_ms": now_ms - sizing.quiet_period_s * 1000})  # fmt: skip
        existing = [rec_from_row(r) for r in rows]
        recs = [propose(p, self._supervised(p.resource_id), now, sizing)  # type: ignore[arg-type]
                for p in gate(proposals, existing, now, sizing)]  # fmt: skip
        await save_recommendations(store, recs, "system", {})
        if recs:
            log.info("right-sizing: %d recommendations proposed", len(recs))
        return recs

    async def _shrink_window(self, now_ms: int) -> list[WindowFigures]:
        params = {"from_ms": now_ms - self.sizing.shrink_window_s * 1000, "to_ms": now_ms, "all": 1, "resources": []}
        rows = await self.services.store.query_dicts(sql.report("util_window_hours"), params)
        return [figures_from_row("7d", r) for r in rows]

    async def _excluding(self, rid: str, from_ms: int, to_ms: int, excluded: set[int]) -> WindowFigures | None:
        rows = await self.services.store.query_dicts(
            sql.report("util_window_excluding"),
            {"resource_id": rid, "from_ms": from_ms, "to_ms": to_ms, "excluded_ms": sorted(excluded)},
        )
        return figures_from_row("7d", rows[0]) if rows else None

    async def check_applied(self, now: datetime) -> list[Recommendation]:
        """Mark approved recommendations applied once an ``adjusted`` event of the resource follows the approval."""
        store = self.services.store
        approved = await load_recommendations(store, status="approved")
        if not approved:
            return []
        rows = await store.query_dicts(
            "SELECT event_id, resource_id, ts, vcpu, mem_gb, storage_gb FROM lifecycle_events FINAL "
            "WHERE type = 'adjusted' AND has({ids:Array(String)}, resource_id) ORDER BY ts, event_id",
            {"ids": sorted({r.resource_id for r in approved})},
        )
        done = []
        for rec in approved:
            assert rec.decided_at is not None
            for ev in rows:
                ts = _utc(ev["ts"])
                if ev["resource_id"] == rec.resource_id and ts is not None and ts >= rec.decided_at:
                    spec = {"vcpu": ev["vcpu"], "mem_gb": ev["mem_gb"], "storage_gb": ev["storage_gb"]}
                    done.append(mark_applied(rec, ev["event_id"], ts, spec))
                    break
        await save_recommendations(store, done, "lifecycle", {r.rec_id: "approved" for r in done})
        return done


# ------------------------------------------------------------------------------ declarations


class DeclarationStage:
    """declarations.v1 (``type: business_period``) → validated → ClickHouse ``declarations``."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def unit_of(self, resource_id: str) -> str | None:
        res = self.services.registry.get(resource_id)
        return res.unit_id if res is not None else None

    async def process(self, messages: Sequence[Message]) -> list[decl.Declaration]:
        """Store the valid declarations; dead-letter the others; ignore other declaration types."""
        now_ms = int(time.time() * 1000)
        stored, rows = [], []
        for m in messages:
            try:
                if decl.envelope_decoder.decode(m.value).type != decl.DECLARATION_TYPE:
                    continue  # assurance periods, ratings, price lists: other agents
                d = decl.declaration_decoder.decode(m.value)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                reason = "schema" if isinstance(exc, msgspec.ValidationError) else "unparseable"
                await self._reject(Reject(reason, str(exc), m.value), m, now_ms)
                continue
            try:
                try:
                    decl.validate(d, self.unit_of)
                except decl.DeclarationError as exc:
                    if exc.code != "unknown_resource":
                        raise
                    await self.services.lifecycle_reader.catch_up()
                    decl.validate(d, self.unit_of)  # the resource's lifecycle may travel behind
            except decl.DeclarationError as exc:
                reason = "foreign_resource" if exc.code == "foreign_resource" else "invalid_declaration"
                await self._reject(Reject(reason, exc.en, m.value), m, now_ms)
                continue
            if d.ts is None:
                d = msgspec.structs.replace(d, ts=datetime.fromtimestamp(now_ms / 1000, timezone.utc))
            assert d.ts is not None
            rows.append(decl.row(d, int(d.ts.timestamp() * 1_000_000)))
            stored.append(d)
        if rows:
            await self.services.store.insert_retrying("declarations", list(zip(*rows)), decl.COLUMNS)
        return stored

    async def _reject(self, reject_: Reject, m: Message, now_ms: int) -> None:
        d = dead_letter(reject_, m, now_ms)
        await self.services.send(TOPIC_DEADLETTER, b"-", json_encoder.encode(d))


# ------------------------------------------------------------------------------ Faust wiring


def register(app: Any, services: Any) -> None:
    """The declarations agent and the utilization timer (leader only: one worker computes windows)."""
    stage = services.domains.get("utilization")
    if stage is None:
        stage = services.domains["utilization"] = UtilizationStage(services)
    topic = app.topic(TOPIC_DECLARATIONS, value_type=bytes, key_type=bytes)

    @app.agent(topic, name="utilization-declarations")
    async def declarations(stream: Any) -> None:
        async for events in stream.take_events(500, within=0.2):
            msgs = [Message(e.message.partition, e.message.offset, e.message.value, e.message.topic) for e in events]
            await stage.declarations.process(msgs)

    @app.timer(interval=stage.tick_s, on_leader=True, name="utilization-tick")
    async def utilization_tick() -> None:
        try:
            await stage.tick()
        except Exception:  # noqa: BLE001 - a timer that raises stops the app; retry next tick
            log.exception("utilization refresh failed; retrying next tick")
