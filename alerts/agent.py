"""The alert agent: events.v1 → rules → alert state (per event, in the stream) plus a timer for deadlines."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from alerts import engine
from alerts.model import Observation, from_event
from alerts.persist import CONTROL_CHANNEL
from alerts.rules import OPS
from alerts.service import AlertService, from_services
from alerts.yamlfile import ConfigError
from opscenter.wire import (
    TOPIC_DEADLETTER,
    TOPIC_EVENTS,
    DeadLetter,
    DeadLetterSource,
    event_decoder,
    json_encoder,
)
from streams.live import CHANNEL, follow

log = logging.getLogger(__name__)

#: how often the timer looks for due holds, groups, repeats, escalations (a cheap ZRANGEBYSCORE)
TIMER_INTERVAL_S = 0.2
#: how often the provider names of summaries are read again from ClickHouse ``orgs``
NAMES_REFRESH_S = 60.0


def decode(services: Any, events: list[Any]) -> tuple[list[Observation], list[DeadLetter]]:
    """Decode events.v1 messages; undecodable ones become dead letters (never stop the agent)."""
    out, dead = [], []
    for e in events:
        m = e.message
        try:
            out.append(from_event(event_decoder.decode(m.value)))
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            reason = "schema" if isinstance(exc, msgspec.ValidationError) else "unparseable"
            dead.append(DeadLetter(reason, f"events.v1: {exc}"[:500], DeadLetterSource(m.topic, m.partition, m.offset),
                                   "", (m.value or b"")[:4096].decode("utf-8", "replace"),
                                   datetime.now(UTC)))  # fmt: skip
    return out, dead


def live_observations(notice: dict[str, Any], registry: Any) -> list[Observation]:
    """A live telemetry notice (streams/live.py) as ``metric`` observations with inventory labels."""
    out = []
    for rid, cpu, mem, storage, ts_ms in notice.get("resources", []):
        res = registry.get(rid) if registry is not None else None
        labels = {"resource": rid, "subject": rid}
        if res is not None:
            labels.update(provider=res.provider_id, unit=res.unit_id, district=res.district_id)
        data = {"cpu_pct": cpu, "mem_pct": mem, "storage_pct": storage}
        if res is not None and res.name:
            data["name"] = res.name  # the registered name, for the summary ({data.name|resource})
        out.append(Observation("metric", int(ts_ms), {k: v for k, v in labels.items() if v}, data))
    return out


#: at most one live-metric evaluation per this many seconds (the newest value per resource wins)
LIVE_EVAL_INTERVAL_S = 1.0
#: where a live notice row keeps each metric: [resource id, cpu, mem, storage, ts_ms]
ROW_INDEX = {"data.cpu_pct": 1, "data.mem_pct": 2, "data.storage_pct": 3}


def firing_checks(rules: Any) -> list[tuple[int, Any, float]]:
    """(row index, operator, value) of every metric threshold's firing condition (and its assurance one)."""
    out = []
    for r in rules:
        if "metric" not in r.select.kinds:
            continue
        for t in (r.threshold, r.assurance_threshold):
            if t is not None and t.field in ROW_INDEX:
                out.append((ROW_INDEX[t.field], OPS[t.op], t.value))
    return out


def _may_matter(row: list, checks: list, watched: set[str]) -> bool:
    """Whether a live row can change the alert state (see :func:`alerts.engine.quiet_metric_test`)."""
    if row[0] in watched:
        return True
    try:
        return any(op(row[i], v) for i, op, v in checks)
    except (IndexError, TypeError):
        return True  # not judged here: the engine decides


def _observe_live(rows: list[list], registry: Any, svc: AlertService, state: Any, now: int) -> Any:
    """The engine step for a set of live rows, under the alert lock: the rows that cannot change
    anything (the engine would skip them) are not even turned into observations."""
    parts = engine.quiet_metric_parts(state, svc.config)
    if parts is not None:
        checks = [(ROW_INDEX.get(f), op, v) for f, op, v in parts[0]]
        checks = [(i, op, v) for i, op, v in checks if i is not None]  # a field a live row lacks never fires
        rows = [r for r in rows if _may_matter(r, checks, parts[1])]
    return engine.observe_many(state, live_observations({"resources": rows}, registry), now, svc.config)


async def follow_live(svc: AlertService, services: Any, interval_s: float = LIVE_EVAL_INTERVAL_S) -> None:
    """Feed live samples to the rules that read kind ``metric`` (only if some rule does).

    Coalesced: notices only update the newest row per resource; the rules see those rows at
    most once per ``interval_s``. A burst (a backfill, a provider catching up) then costs the
    same as a quiet minute, instead of evaluating every sample under the engine's lock while
    the stream, the timers and the screens wait behind it. Thresholds hold for seconds to
    minutes (``for``), so seeing each resource once a second loses nothing they need.

    Except a resource that *just became* hot (a value meeting some metric rule's firing
    condition, normal or assurance threshold, after one that did not): it is evaluated at once,
    so an alert without a hold is not kept waiting for the interval. A resource that stays hot
    does not count again, so a hot city still costs one evaluation per interval.
    """
    if not any("metric" in r.select.kinds for r in svc.config.rules):
        return
    pending: dict[str, list] = {}  # resource id → newest [rid, cpu, mem, storage, ts_ms]
    changed, urgent = asyncio.Event(), asyncio.Event()
    checks, checked_config = firing_checks(svc.config.rules), svc.config
    hot: set[str] = set()

    async def evaluate() -> None:
        while True:
            await changed.wait()
            changed.clear()
            urgent.clear()
            rows = list(pending.values())
            pending.clear()
            try:
                await svc.mutate(functools.partial(_observe_live, rows, getattr(services, "registry", None), svc))
            except Exception:
                log.exception("live metric evaluation failed")
            try:
                await asyncio.wait_for(urgent.wait(), interval_s)
            except TimeoutError:
                pass

    def on_message(_channel: str, data: bytes) -> None:
        try:
            notice = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(notice, dict) or notice.get("type") != "telemetry":
            return
        nonlocal checks, checked_config
        if svc.config is not checked_config:  # the rule file was reloaded
            checks, checked_config = firing_checks(svc.config.rules), svc.config
        for row in notice.get("resources", []):
            try:
                cur = pending.get(row[0])
                if cur is None or row[4] >= cur[4]:
                    pending[row[0]] = row
                    if any(op(row[i], v) for i, op, v in checks):
                        if row[0] not in hot:
                            hot.add(row[0])
                            urgent.set()
                    else:
                        hot.discard(row[0])
            except (IndexError, KeyError, TypeError):
                continue  # a malformed row never stops the follower
        changed.set()

    evaluator = asyncio.ensure_future(evaluate())
    try:
        # resubscribes after a Redis restart; the newest values come with the next samples
        await follow(services.redis, (CHANNEL,), on_message, name="live-metric alerting")
    finally:
        evaluator.cancel()


async def follow_control(svc: AlertService, services: Any) -> None:
    """Reload the rule file when the API asks (any process may serve the reload request).

    After a lost Redis connection the file is reloaded once: a request may have been missed.
    """

    def reload() -> None:
        try:
            svc.reload()
        except ConfigError as exc:  # the API validated it; a later edit may not be
            log.error("rule reload refused, running rules kept: %s", exc)

    def on_message(_channel: str, data: bytes) -> None:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict) and doc.get("reload"):
            reload()

    async def on_reconnect() -> None:
        reload()

    await follow(services.redis, (CONTROL_CHANNEL,), on_message, on_reconnect, "alert control")


def register(app: Any, services: Any) -> None:
    """Add the alert agent, its timer and its live-metric task to the Faust app."""
    svc = from_services(services)
    topic = app.topic(TOPIC_EVENTS, value_type=bytes, key_type=bytes)

    @app.agent(topic, name="alerts")
    async def alerts(stream: Any) -> None:
        async for events in stream.take_events(200, within=0.02):
            await svc.start()
            observations, dead = decode(services, events)
            for d in dead:
                await services.send(TOPIC_DEADLETTER, None, json_encoder.encode(d))
            t0 = time.perf_counter()
            await svc.observe(observations)
            log.debug(
                "alerts: %d events in %.1f ms", len(observations), (time.perf_counter() - t0) * 1000
            )

    @app.timer(interval=TIMER_INTERVAL_S)
    async def alert_timers() -> None:
        try:
            await svc.start()
            await svc.fire_due()
        except Exception:
            log.exception("alert timers failed; retrying next tick")

    @app.task
    async def alert_names() -> None:
        while True:  # at start, then every minute; a failure keeps the names loaded before
            try:
                await svc.refresh_names()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - ClickHouse away: summaries name providers by id
                log.warning("alert summaries: org names not loaded (%s); retrying in %.0f s", exc, NAMES_REFRESH_S)
            await asyncio.sleep(NAMES_REFRESH_S)

    @app.task
    async def alert_control() -> None:
        try:
            await follow_control(svc, services)
        except Exception:
            log.exception("alert control channel stopped")

    @app.task
    async def alert_live() -> None:
        try:
            await svc.start()
            await follow_live(svc, services)
        except Exception:
            log.exception("live metric alerting stopped")
