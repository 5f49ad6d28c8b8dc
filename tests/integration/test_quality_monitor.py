"""The quality monitor (streams/quality.py) against the real broker, Valkey and chDB, with a controlled clock:
two workers at once, a broker failure mid-tick, a restart, Redis without live state, provider completeness."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from opscenter.services import Services
from opscenter.settings import Settings
from opscenter.wire import TOPIC_EVENTS, TOPIC_INCIDENTS, LifecycleEvent, Spec
from streams.live import LiveState
from streams.nodata import Policy
from streams.quality import OUTBOX_KEY, QualityMonitor

S = 1000
POLICY = Policy(intervals=3, incident_after_s=60, incident_severity="P3", startup_grace_s=0, outage_pct=50,
                outage_min_resources=3, low_pct=90, clear_pct=95)  # fmt: skip
SAMPLE_COLUMNS = ["ts", "resource_id", "provider_id", "cpu_pct", "mem_pct", "storage_pct", "late", "ingest_ts",
                  "batch_id", "src_topic", "src_partition", "src_offset"]  # fmt: skip


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def deliver(s: Services, rid: str, provider: str, at_ms: int, interval_s: int) -> None:
    s.registry.apply(LifecycleEvent(f"ev-{rid}", rid, "delivered", dt(at_ms), provider, "u1", "d1", rid, Spec(2, 4, 50),
                                    interval_s))  # fmt: skip


async def live(s: Services, **ts_ms: int) -> None:
    """The newest sample of each resource, written the way the ingest stage writes it."""
    rids = list(ts_ms)
    await LiveState(s.redis).publish_latest(rids, ["p1"] * len(rids), [ts_ms[r] for r in rids], [5.0] * len(rids),
                                            [5.0] * len(rids), [5.0] * len(rids), max(ts_ms.values()))  # fmt: skip


async def read_topic(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Everything in the topic so far (every send was acknowledged by the broker before)."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap(), auto_offset_reset="earliest",
                         group_id=None, enable_auto_commit=False)  # fmt: skip
    await c.start()
    out: list[dict[str, Any]] = []
    try:
        empty = 0
        while empty < 2:
            batch = await c.getmany(timeout_ms=300)
            msgs = [m for ms in batch.values() for m in ms]
            empty = 0 if msgs else empty + 1
            out.extend(orjson.loads(m.value) for m in msgs)
    finally:
        await c.stop()
    return out


def monitor(s: Services, now_ms: int, send: Any = None) -> QualityMonitor:
    return QualityMonitor(s.redis, s.store, s.registry, send or s.send, POLICY, window_s=3600, lag_s=120,
                          clock=lambda: now_ms / 1000)  # fmt: skip


async def test_two_workers_a_broker_failure_and_a_restart_still_send_each_signal_exactly_once(
    services: Services, settings: Settings
) -> None:
    now = int(time.time() * 1000)
    for rid in ("r1", "r2", "r3"):
        deliver(services, rid, "p1", now - 3600 * S, 10)  # 3 × 10 s without a sample: nodata
    await live(services, r1=now - 100 * S, r2=now - 5 * S, r3=now - 5 * S)
    a, b = monitor(services, now), monitor(services, now)
    # two leaders at once (a rebalance overlap), each ticking five times concurrently
    await asyncio.gather(*(m.tick_nodata(now + i) for m in (a, b) for i in range(5)))
    events, incidents = await read_topic(settings, TOPIC_EVENTS), await read_topic(settings, TOPIC_INCIDENTS)
    assert [(e["kind"], e["event_id"]) for e in events] == [("nodata", f"nodata:r1:{now - 100 * S}")]
    (opened,) = incidents  # silent for 100 s > 60 s: one auto-detected incident
    assert (opened["incident_id"], opened["type"], opened["severity"], opened["resource_ids"]) == (
        f"auto-nodata-r1-{now - 100 * S}", "opened", "P3", ["r1"])  # fmt: skip

    # r2 falls silent too (2 of 3: provider outage) while the broker refuses every message
    t1 = now + 40 * S
    await live(services, r3=t1 - S)

    async def broken(topic: str, key: bytes | None, value: bytes) -> None:
        raise ConnectionError("broker unavailable")

    with pytest.raises(ConnectionError):
        await monitor(services, t1, broken).tick_nodata(t1)
    assert await services.redis.hlen(OUTBOX_KEY) == 2  # judged, stored, not sent: kept for the next flush
    restarted = monitor(services, t1 + S)  # a new worker process: nothing judged twice, the outbox sent
    sent = await restarted.tick_nodata(t1 + S)
    assert [m.message_id for m in sent] == [f"nodata:r2:{now - 5 * S}", f"provider_outage:p1:{now + 25 * S}"]
    assert await restarted.tick_nodata(t1 + 2 * S) == []

    # samples return: both cleared, the incident resolved, the outage over — once each
    t2 = t1 + 10 * S
    await live(services, r1=t2 - S, r2=t2 - S, r3=t2 - S)
    await asyncio.gather(a.tick_nodata(t2), b.tick_nodata(t2), restarted.tick_nodata(t2))
    events, incidents = await read_topic(settings, TOPIC_EVENTS), await read_topic(settings, TOPIC_INCIDENTS)
    assert sorted(e["event_id"] for e in events) == sorted([
        f"nodata:r1:{now - 100 * S}", f"nodata:r2:{now - 5 * S}", f"provider_outage:p1:{now + 25 * S}",
        f"nodata_cleared:r1:{now - 100 * S}", f"nodata_cleared:r2:{now - 5 * S}",
        f"provider_recovered:p1:{now + 25 * S}",
    ])  # fmt: skip
    outage = next(e for e in events if e["kind"] == "provider_outage")
    assert outage["data"]["silent"] == 2 and outage["data"]["in_service"] == 3 and outage["provider_id"] == "p1"
    assert [(i["type"], i["event_id"]) for i in incidents] == [
        ("opened", f"auto-nodata-r1-{now - 100 * S}:opened"), ("resolved", f"auto-nodata-r1-{now - 100 * S}:resolved")]
    assert await services.redis.hlen(OUTBOX_KEY) == 0


async def test_without_live_state_the_newest_sample_comes_from_clickhouse(services: Services, settings: Settings) -> None:
    now = int(time.time() * 1000)
    deliver(services, "r4", "p1", now - 7200 * S, 30)
    last = now - 600 * S
    services.store.client.insert("samples", [[dt(last - 30 * S), "r4", "p1", 1, 1, 1, 0, dt(last), "b", "t#e", 0, 1],
                                             [dt(last), "r4", "p1", 1, 1, 1, 0, dt(last), "b", "t#e", 0, 2]],
                                 column_names=SAMPLE_COLUMNS)  # fmt: skip
    sent = await monitor(services, now).tick_nodata(now)
    ev = orjson.loads(sent[0].value)
    # silent since its last stored sample (not since its delivery): Redis lost it, ClickHouse has it
    assert ev["event_id"] == f"nodata:r4:{last}" and ev["data"]["reported"] is True
    assert [m.message_id.split(":")[0] for m in sent] == ["nodata", f"auto-nodata-r4-{last}"]


async def test_provider_completeness_goes_low_and_clears_only_above_the_clear_threshold(
    services: Services, settings: Settings
) -> None:
    now = int(time.time() * 1000) // 60_000 * 60_000 - 50 * S  # 10 s into a minute: the ticks below share a window
    for rid in ("q1", "q2"):
        deliver(services, rid, "p1", now - 3 * 3600 * S, 60)
    mon = monitor(services, now)
    lo, hi = mon.window(now)
    assert hi - lo == 3600 * S and hi <= now - 120 * S

    def store(rid: str, minutes: range) -> None:
        rows = [[dt(lo + m * 60 * S + 5 * S), rid, "p1", 1, 1, 1, 0, dt(lo + m * 60 * S + 6 * S), "b", "t#e", 0, m]
                for m in minutes]  # fmt: skip
        services.store.client.insert("samples", rows, column_names=SAMPLE_COLUMNS)

    store("q1", range(60))
    store("q2", range(30))  # (60 + 30) / 120 = 75 %
    store("q1", range(60, 70))  # after the window: not counted, and q1 cannot make up for q2 anyway
    low = await mon.tick_quality(now)
    store("q2", range(30, 50))  # 110 / 120 = 91.7 %: above 90, below 95: still low
    assert await mon.tick_quality(now + S) == []
    store("q2", range(50, 55))  # 115 / 120 = 95.8 %: ok
    ok = await mon.tick_quality(now + 2 * S)
    assert await mon.tick_quality(now + 3 * S) == []
    docs = [orjson.loads(m.value) for m in low + ok]
    assert [(d["kind"], d["provider_id"], d["data"]["state"], d["data"]["completeness_pct"]) for d in docs] == [
        ("telemetry_quality", "p1", "low", 75.0), ("telemetry_quality", "p1", "ok", 95.83)]
    assert docs[0]["data"]["window_from_ms"] == lo and docs[0]["data"]["window_to_ms"] == hi
    assert [e["kind"] for e in await read_topic(settings, TOPIC_EVENTS)] == ["telemetry_quality"] * 2
