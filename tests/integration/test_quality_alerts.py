"""nodata end to end on the real broker, Valkey and chDB, with the Faust worker and the alert engine running:
a resource falls silent → nodata → one alert and an auto-detected incident; data returns → resolved; a
provider-wide silence → provider_outage, which mutes that provider's per-resource nodata alerts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import orjson
from aiokafka import AIOKafkaProducer
from faust.contrib.asgi import faust_app_running

from alerts import persist
from alerts.config import parse_config
from alerts.service import from_services
from opscenter.services import create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import (
    TOPIC_DEADLETTER,
    TOPIC_EVENTS,
    TOPIC_LIFECYCLE,
    TOPIC_TELEMETRY,
    LifecycleEvent,
    Spec,
    json_encoder,
    shard_key,
)
from streams.app import build_faust_app
from streams.live import RES_PREFIX
from streams.sla_agent import incident_key
from tests.integration.helpers import eventually, telemetry
from tests.integration.test_alerts import Feed
from tests.integration.test_quality_monitor import read_topic

RULES = Path(__file__).resolve().parents[2] / "alerts" / "rules.yaml"
RESOURCES = {"r-a": "p1", "r-b": "p1", "r-c": "p1", "r-z": "p2"}


class Telemetry:
    """A provider fleet sending one sample per resource every 0.25 s for the resources in ``alive``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.alive = set(RESOURCES)
        self._task: asyncio.Task[None] | None = None
        self.last_ms: dict[str, int] = {}

    async def __aenter__(self) -> Self:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap(), acks="all")
        await self.producer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        n = 0
        while True:
            now = int(time.time() * 1000)
            for provider in ("p1", "p2"):
                rids = sorted(r for r in self.alive if RESOURCES[r] == provider)
                if rids:
                    n += 1
                    value = telemetry(provider, f"b-{provider}-{n}", [(r, now, 50.0, 50.0, 50.0) for r in rids])
                    await self.producer.send_and_wait(TOPIC_TELEMETRY, value, key=shard_key(provider, rids[0]))
                    self.last_ms.update({r: now for r in rids})
            await asyncio.sleep(0.25)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.producer.stop()


async def _alerts(redis: Any, rule: str) -> dict[str, Any]:
    """The alerts of ``rule`` in the engine's state, by resource (or provider)."""
    state, _ = await persist.load(redis)
    return {a.labels.get("resource") or a.labels["provider"]: a for a in state.alerts.values() if a.rule == rule}


async def test_silence_alerts_once_opens_an_incident_and_an_outage_mutes_its_resources(settings: Settings) -> None:
    settings = settings.model_copy(update={
        "nodata_intervals": 2, "nodata_startup_grace_s": 0.0, "nodata_tick_s": 0.3, "nodata_incident_after_s": 4.0,
        "quality_tick_s": 3600.0,
    })  # fmt: skip
    await create_topics(settings)
    services = await open_services(settings)
    feed = await Feed(settings.redis()).start()
    # the product's rule file, with a group wait long enough to see an outage arrive within it
    config = parse_config(RULES.read_text(encoding="utf-8").replace("group_wait_s: 0.5", "group_wait_s: 1.0"))
    svc = from_services(services, config)
    try:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap(), acks="all")
        await producer.start()
        for rid, provider in RESOURCES.items():  # interval 1 s: silent after 2 s
            ev = LifecycleEvent(f"ev-{rid}", rid, "delivered", datetime.now(UTC), provider, "u1", "d1", rid,
                                Spec(2, 4, 50), 1)  # fmt: skip
            await producer.send_and_wait(TOPIC_LIFECYCLE, json_encoder.encode(ev), key=rid.encode())
        await producer.stop()
        # p1's names in orgs: the worker reads them at start and names the provider in its summaries
        await services.store.insert_columns("orgs", [["provider"], ["p1"], ["海岸云"], ["Coast Cloud"], [""], [1]],
                                            ["kind", "org_id", "name_zh", "name_en", "parent", "version"])  # fmt: skip
        app = build_faust_app(services)
        async with faust_app_running(app, stop_timeout=20), Telemetry(settings) as fleet:

            async def all_live() -> bool:
                return all(await services.redis.mget([RES_PREFIX + r for r in RESOURCES]))

            await eventually(all_live, timeout_s=60, every_s=0.2)

            # 1. r-a falls silent: one nodata alert, notified once; after 4 s an auto-detected incident
            fleet.alive.discard("r-a")

            async def notified(resource: str, state: str = "firing") -> list[dict[str, Any]]:
                return _notified(feed, "telemetry_nodata", state, resource)

            (alert,) = await eventually(lambda: notified("r-a"), timeout_s=30, every_s=0.1)
            assert alert["rule"] == "telemetry_nodata" and alert["labels"] == {
                "provider": "p1", "unit": "u1", "district": "d1", "resource": "r-a"}  # fmt: skip
            assert alert["summary_zh"].startswith("资源 r-a 监控数据中断") and "r-a" in alert["summary_en"]

            async def incident_state(rid: str) -> str | None:
                keys = await services.redis.keys(incident_key(f"auto-nodata-{rid}-*"))
                states = [await services.redis.hget(k, "state") for k in keys]
                return states[0].decode() if len(states) == 1 and states[0] else None

            assert await eventually(lambda: incident_state("r-a"), timeout_s=30, every_s=0.2) == "open"
            assert await incident_state("r-a") == "open"
            fleet.alive.add("r-a")
            await eventually(lambda: notified("r-a", "resolved"), timeout_s=30, every_s=0.1)

            async def resolved_incident() -> bool:
                return await incident_state("r-a") == "resolved"

            await eventually(resolved_incident, timeout_s=30, every_s=0.2)

            # 2. r-b and r-c fall silent together: 2 of p1's 3 resources → provider_outage mutes their nodata
            fleet.alive -= {"r-b", "r-c"}
            (outage,) = await eventually(lambda: _async(_notified(feed, "provider_outage", "firing")), timeout_s=30,
                                         every_s=0.1)  # fmt: skip
            assert outage["labels"] == {"provider": "p1"} and outage["severity"] == "P1"
            assert outage["summary_zh"].startswith("云服务商 海岸云 整体故障：2/3 个在服资源无监控数据")
            assert outage["summary_en"].startswith("Provider Coast Cloud outage: 2 of 3 in-service")

            async def muted() -> dict[str, Any]:
                found = await _alerts(services.redis, "telemetry_nodata")
                return found if all(found.get(r) and found[r].inhibited_by for r in ("r-b", "r-c")) else {}

            nodata = await eventually(muted, timeout_s=30, every_s=0.1)
            assert all(nodata[r].state == "firing" and not nodata[r].notified_ms for r in ("r-b", "r-c"))
            await asyncio.sleep(1.2)  # past the group wait: still nobody paged for the symptoms
            assert not await notified("r-b") and not await notified("r-c")

            # 3. they report again: the outage and both symptoms resolve
            fleet.alive |= {"r-b", "r-c"}
            await eventually(lambda: _async(_notified(feed, "provider_outage", "resolved")), timeout_s=30, every_s=0.1)

            async def symptoms_resolved() -> bool:
                found = await _alerts(services.redis, "telemetry_nodata")
                return all(found[r].state == "resolved" for r in ("r-b", "r-c") if r in found)

            await eventually(symptoms_resolved, timeout_s=30, every_s=0.1)
        await svc.drain()
        events = await read_topic(settings, TOPIC_EVENTS)
        mine = [(e["kind"], e["subject"]) for e in events if e["kind"] in
                ("nodata", "nodata_cleared", "provider_outage", "provider_recovered")]  # fmt: skip
        # each silence raised once and cleared once, although the monitor judged every 0.3 s
        assert sorted(mine) == sorted([("nodata", "r-a"), ("nodata_cleared", "r-a"), ("nodata", "r-b"),
                                       ("nodata", "r-c"), ("provider_outage", "p1"), ("nodata_cleared", "r-b"),
                                       ("nodata_cleared", "r-c"), ("provider_recovered", "p1")])  # fmt: skip
        # r-a once, the outage once, the symptoms it muted never: nobody paged twice
        assert len(_notified(feed, "telemetry_nodata", "firing")) == 1
        assert len(_notified(feed, "provider_outage", "firing")) == 1
        letters = [orjson.loads(d["payload"]) for d in await read_topic(settings, TOPIC_DEADLETTER)
                   if d["source"]["topic"] != TOPIC_TELEMETRY]  # fmt: skip
        assert letters == []  # the incidents agent accepted the auto-detected incident's steps
    finally:
        await svc.aclose()
        await feed.stop()
        await services.aclose()


def _notified(feed: Feed, rule: str, state: str, resource: str | None = None) -> list[dict[str, Any]]:
    """Alerts of ``rule`` in ``state`` as notified on the feed (a group's notice may mix states)."""
    return [a for n in feed.of("notification") for a in n["alerts"] if a["rule"] == rule and a["state"] == state
            and (resource is None or a["labels"].get("resource") == resource)]  # fmt: skip


async def _async(v: Any) -> Any:
    return v
