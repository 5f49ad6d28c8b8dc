"""The wall's slow panels and per-provider figures against real Valkey, chDB and the broker:
SLA gauges per provider, open incidents, telemetry completeness, pipeline health, and scope."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from dashboard.feed import SLA_VIEWERS, LiveHub
from dashboard.panels import Panels
from opscenter.auth import Principal
from opscenter.embedded import free_port
from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import LifecycleEvent, Spec
from opscenter.workdays import SHANGHAI
from streams.live import CHANNEL as LIVE_CHANNEL
from streams.sla_agent import INCIDENT_CHANNEL, OPEN_KEY, incident_key
from tests.integration.helpers import eventually

#: the panels' "now": mid-month, noon in Weihai
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=SHANGHAI)
MIN = 60_000
BUREAU = Principal("duty", "bureau")
P1 = Principal("p1-user", "provider", "p1")
UNIT = Principal("u1-user", "unit", "u1")
FINANCE = Principal("fin", "finance")

INCIDENT_COLUMNS = ("incident_id", "provider_id", "severity", "drill", "state", "resource_ids", "text", "opened",
                    "acknowledged", "resolved", "closed", "updated", "response_target_ms", "restore_target_ms",
                    "state_json", "version")  # fmt: skip
TARGETS = {"P1": (15 * MIN, 240 * MIN), "P2": (30 * MIN, 480 * MIN), "P3": (120 * MIN, 1440 * MIN),
           "P4": (480 * MIN, 4320 * MIN)}  # fmt: skip


async def soon(check: Any, timeout_s: float) -> None:
    """``eventually`` for a plain (not async) check."""

    async def run() -> Any:
        return check()

    await eventually(run, timeout_s=timeout_s, every_s=0.05)


def at(hh: int, mm: int = 0, day: int = 15, month: int = 3) -> datetime:
    return datetime(2026, month, day, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


def incident(iid: str, provider: str, sev: str, opened: datetime, ack: datetime | None = None,
             resolved: datetime | None = None, drill: bool = False) -> list[Any]:  # fmt: skip
    state = "resolved" if resolved else "acknowledged" if ack else "open"
    return [iid, provider, sev, int(drill), state, [], "", opened, ack, resolved, None, resolved or ack or opened,
            *TARGETS[sev], "{}", 1]  # fmt: skip


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    await create_topics(settings)
    s = await open_services(settings)
    for rid, provider, unit, district in [("a1", "p1", "u1", "d1"), ("a2", "p1", "u1", "d1"), ("b1", "p2", "u2", "d2")]:
        s.registry.apply(LifecycleEvent(f"e-{rid}", rid, "delivered", datetime.now(UTC), provider, unit,
                                        district, f"主机-{rid}", Spec(4, 8, 100)))  # fmt: skip
    yield s
    await s.aclose()


async def seed_sla(s: Services) -> None:
    rows = [
        incident("i1", "p1", "P2", at(10), ack=at(10, 10), resolved=at(11)),  # both clocks in time
        incident("i2", "p1", "P2", at(9), ack=at(10)),  # answered after 60 min (> 30); restore still running
        incident("i3", "p1", "P1", at(11), drill=True),  # a drill: excluded from every figure
        incident("i4", "p1", "P3", at(10, day=20, month=2)),  # last month: not this month's figure
        incident("i5", "p2", "P4", at(8), resolved=at(9)),  # resolution answers the response clock too
    ]
    await s.store.insert_columns("incidents", list(zip(*rows)), INCIDENT_COLUMNS)
    signals = [("b-i2", "sla_breach", "i2", "response", "p1", "P2", at(9, 30), at(9, 30)),
               ("b-old", "sla_breach", "ix", "restore", "p1", "P2", at(20, day=14), at(20, day=14)),  # yesterday
               ("n-i2", "sla_near_breach", "i2", "response", "p1", "P2", at(9, 24), at(9, 24))]  # fmt: skip
    await s.store.insert_columns("sla_signals", list(zip(*signals)),
                                 ("event_id", "kind", "subject", "which", "provider_id", "severity", "at", "fired_ts"))
    # open incidents as the SLA agent keeps them in Redis
    for iid, pid, sev, state, drill in [("i2", "p1", "P2", "acknowledged", 0), ("i3", "p1", "P1", "open", 1),
                                        ("i1", "p1", "P2", "resolved", 0), ("i6", "p2", "P1", "open", 0)]:
        await s.redis.hset(incident_key(iid), mapping={"provider_id": pid, "severity": sev, "state": state,
                                                       "drill": drill})  # fmt: skip
        await s.redis.sadd(OPEN_KEY, iid)


async def test_sla_gauges_per_provider_and_their_scope(services: Services) -> None:
    await seed_sla(services)
    panels = Panels.of(services, clock=lambda: NOW.timestamp())
    hub = LiveHub(services.redis, services.registry, {"p1": "海韵云", "p2": "东海数智"}, ["d1", "d2"],
                  providers=["p1", "p2", "p3"], panels=panels)  # fmt: skip
    await hub._reload()
    await panels.refresh_sla()

    sla = hub.frame(viewer=BUREAU)["sla"]
    assert sla["period"] == "month" and sla["ok"] and sla["as_of_ms"] == int(NOW.timestamp() * 1000)
    cards = {c["id"]: c for c in sla["providers"]}
    assert list(cards) == ["p1", "p2", "p3"]  # p3 has no incident yet: shown, without figures
    p1 = cards["p1"]
    assert (p1["response_share"], p1["restore_share"]) == (0.5, 1.0)  # i2 late; i2's restore undecided
    assert (p1["incidents"], p1["response_decided"], p1["restore_decided"]) == (2, 2, 1)
    assert p1["breaches_today"] == 1  # yesterday's breach and the near-breach do not count
    assert p1["open"] == {"P1": 0, "P2": 1, "P3": 0, "P4": 0}  # the drill and the resolved one are not open
    assert (cards["p2"]["response_share"], cards["p2"]["restore_share"]) == (1.0, 1.0)
    assert cards["p2"]["open"]["P1"] == 1
    assert cards["p3"]["response_share"] is None and cards["p3"]["name"] == "p3"

    # a provider sees its own gauge only; units, districts and finance see none (as GET /api/v1/sla)
    mine = hub.frame(viewer=P1)["sla"]
    assert [c["id"] for c in mine["providers"]] == ["p1"] and mine["providers"][0]["response_share"] == 0.5
    assert hub.frame(viewer=UNIT)["sla"] is None
    assert hub.frame(viewer=FINANCE)["sla"] is None
    assert hub.frame(viewer=Principal("k", "kiosk", kind="kiosk"))["sla"]["providers"][0]["id"] == "p1"
    assert {"bureau", "auditor", "provider"} <= SLA_VIEWERS  # dashboard.api_incidents.SLA_READERS


async def test_open_incidents_follow_redis_and_trigger_an_early_refresh(services: Services) -> None:
    await seed_sla(services)
    panels = Panels.of(services, clock=lambda: NOW.timestamp(), sla_every_s=3600, sla_min_s=0.2)
    hub = LiveHub(services.redis, services.registry, {}, ["d1", "d2"], providers=["p1", "p2"], panels=panels)
    await hub.start()
    try:
        await soon(lambda: panels.sla_ok, timeout_s=15)
        assert hub.frame(viewer=BUREAU)["sla"]["providers"][1]["open"]["P1"] == 1
        # the SLA agent resolves i6 and opens i7: the counts follow at once, the shares soon after
        await services.redis.publish(INCIDENT_CHANNEL, orjson.dumps(
            {"incident_id": "i6", "provider_id": "p2", "severity": "P1", "state": "resolved", "drill": False}))
        await services.redis.publish(INCIDENT_CHANNEL, orjson.dumps(
            {"incident_id": "i7", "provider_id": "p1", "severity": "P3", "state": "open", "drill": False}))

        def counts() -> tuple[int, int]:
            cards = hub.frame(viewer=BUREAU)["sla"]["providers"]
            return cards[1]["open"]["P1"], cards[0]["open"]["P3"]

        await soon(lambda: counts() == (0, 1), timeout_s=15)
        await services.store.insert_columns("incidents", list(zip(incident("i8", "p2", "P4", at(11)))),
                                            INCIDENT_COLUMNS)  # fmt: skip
        await services.redis.publish(INCIDENT_CHANNEL, orjson.dumps(
            {"incident_id": "i8", "provider_id": "p2", "severity": "P4", "state": "open", "drill": False}))
        # not the 1-hour cadence: the notice made the panels query again
        await soon(lambda: panels.sla["p2"]["incidents"] == 2, timeout_s=15)
    finally:
        await hub.stop()


async def test_completeness_per_provider_within_the_viewers_scope(services: Services) -> None:
    hub = LiveHub(services.redis, services.registry, {"p1": "海韵云"}, ["d1", "d2"])
    now = int(time.time() * 1000)
    hub._apply(LIVE_CHANNEL, orjson.dumps({"type": "telemetry", "ts_ms": now, "resources": [
        ["a1", 50.0, 40.0, 30.0, now - 5_000],  # reported just now
        ["a2", 60.0, 40.0, 30.0, now - 10 * MIN],  # silent for 10 minutes: not reporting
        ["b1", 70.0, 40.0, 30.0, now - 1_000]]}))  # fmt: skip
    frame = hub.frame(now, viewer=BUREAU)
    assert frame["providers"] == [
        {"id": "p1", "name": "海韵云", "resources": 2, "reporting": 1, "share": 0.5},
        {"id": "p2", "name": "p2", "resources": 1, "reporting": 1, "share": 1.0},
    ]
    assert frame["sla"] is None and frame["pipeline"] is None  # a hub without panels (e.g. the fan-out bench)
    # a unit sees the providers serving it, over its own resources only
    assert [(p["id"], p["resources"]) for p in hub.frame(now, viewer=UNIT)["providers"]] == [("p1", 2)]
    # a deregistered resource is no longer in service: it does not count as missing
    services.registry.apply(LifecycleEvent("e-a2-dr", "a2", "deregistration_requested", datetime.now(UTC),
                                           "p1", "u1", "d1", "主机-a2", Spec(4, 8, 100)))  # fmt: skip
    services.registry.apply(LifecycleEvent("e-a2-d", "a2", "deregistered", datetime.now(UTC), "p1", "u1",
                                           "d1", "主机-a2", Spec(4, 8, 100)))  # fmt: skip
    assert hub.frame(now, viewer=P1)["providers"] == [
        {"id": "p1", "name": "海韵云", "resources": 1, "reporting": 1, "share": 1.0}]


async def test_pipeline_health_rate_lag_dead_letters_and_a_service_down(services: Services) -> None:
    panels = Panels.of(services)
    await panels.refresh_health()
    h = panels.health
    assert h is not None
    assert h["status"] == "ok" and h["checks"] == {"broker": True, "redis": True, "clickhouse": True}
    assert h["behind_s"] is None and h["deadletters"] == 0  # nothing stored yet: no lag to speak of

    now = datetime.now(UTC)
    stale = datetime.fromtimestamp(now.timestamp() - 300, UTC)  # newest sample 5 minutes old
    cols = ("ts", "resource_id", "provider_id", "cpu_pct", "mem_pct", "storage_pct", "ingest_ts", "batch_id",
            "src_topic", "src_partition", "src_offset")  # fmt: skip
    rows = [(stale, "a1", "p1", 10.0, 10.0, 10.0, now, "b", "t", 0, i) for i in range(40)]
    await asyncio.sleep(1.0)  # the rate is the growth of the count between two polls at least 1 s apart
    await services.store.insert_columns("samples", list(zip(*rows)), cols)
    await services.store.insert_columns("deadletters", [[now], ["out_of_range"], ["cpu 130"], ["p1"], ["b"], ["{}"],
                                                        ["telemetry.v1"], [0], [7], [0]],
                                        ("ingest_ts", "reason", "detail", "provider_id", "batch_id", "payload",
                                         "src_topic", "src_partition", "src_offset", "idx"))  # fmt: skip
    await panels.refresh_health()
    h = panels.health
    assert 0 < h["samples_per_s"] <= 40
    assert 295 <= h["behind_s"] <= 320 and h["deadletters"] == 1
    assert h["status"] == "warn" and h["problems"] == ["lag"]  # 5 minutes behind: the wall shows amber

    # Redis unreachable (nothing listens on the port): the panel says which part is down
    dead_redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        down = Panels(services.store, dead_redis, services.producer)
        await down.refresh_health()
        assert down.health["status"] == "down" and down.health["problems"] == ["redis"]
        assert down.health["checks"] == {"broker": True, "redis": False, "clickhouse": True}
    finally:
        await dead_redis.aclose()

    # the frame carries the panel to city-wide viewers only
    hub = LiveHub(services.redis, services.registry, {}, [], panels=panels)
    assert hub.frame(viewer=FINANCE)["pipeline"]["status"] == "warn"
    assert hub.frame(viewer=P1)["pipeline"] is None and hub.frame(viewer=UNIT)["pipeline"] is None


def test_a_wall_shows_the_six_worst_providers_when_there_are_more() -> None:
    """Pure frame logic (no service touched): more providers than gauges fit."""
    from opscenter.inventory import Registry

    panels = Panels(store=None, redis=None)
    panels.sla = {f"p{i}": {"response_share": 1.0 - i / 100, "restore_share": 1.0, "incidents": 1} for i in range(8)}
    panels.sla_ok = True
    hub = LiveHub(None, Registry(), {}, [], providers=[f"p{i}" for i in range(8)] + ["p9"], panels=panels)  # type: ignore[arg-type]
    sla = hub.frame(viewer=BUREAU)["sla"]
    # p9 has no figures and p0, p1 the best shares: those three are left out, the rest stay in id order
    assert [c["id"] for c in sla["providers"]] == ["p2", "p3", "p4", "p5", "p6", "p7"] and sla["hidden"] == 3
