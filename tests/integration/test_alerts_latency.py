"""Alert latency (event produced → notice on the console feed) under background telemetry load."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from faust.contrib.asgi import faust_app_running
from redis.asyncio import Redis

from alerts import persist
from alerts.config import parse_config
from alerts.service import from_services
from opscenter.services import create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import TOPIC_EVENTS, TOPIC_LIFECYCLE, TOPIC_TELEMETRY, shard_key
from streams.app import build_faust_app
from tests.integration.helpers import delivered, eventually, produce, telemetry
from tests.integration.test_alerts import event

RULES = """
defaults: {group_wait_s: 0}
receivers: {oncall: {}}
escalation: {P3: [{after_s: 0, receivers: [oncall]}]}
rules:
  - name: utilization_high
    type: event
    kind: band_change
    where: {data.to: high}
    labels: [provider, resource]
    severity: P3
    summary: {zh: "资源 {resource} 偏高", en: "{resource} high"}
"""
RESOURCES = 200
ALERTS = 60


@pytest.mark.slow
async def test_alert_latency_under_telemetry_load(settings: Settings) -> None:
    await create_topics(settings)
    services = await open_services(settings)
    from_services(services, parse_config(RULES))
    redis = Redis.from_url(settings.redis())
    pubsub = redis.pubsub()
    await pubsub.subscribe(persist.CHANNEL)
    seen: dict[str, float] = {}

    async def listen() -> None:
        async for msg in pubsub.listen():
            if msg["type"] == "message":
                doc = orjson.loads(msg["data"])
                if doc["type"] == "notification":  # alerts firing together arrive grouped in one
                    for a in doc["alerts"]:
                        seen.setdefault(a["labels"]["resource"], time.monotonic())

    listener = asyncio.ensure_future(listen())
    stop = asyncio.Event()
    sent_samples = 0

    async def background(p: AIOKafkaProducer) -> None:
        nonlocal sent_samples
        k = 0
        while not stop.is_set():
            now_ms = int(time.time() * 1000)
            batch = [(f"r{i}", now_ms, 50.0, 40.0, 30.0) for i in range(RESOURCES)]
            await p.send_and_wait(
                TOPIC_TELEMETRY, telemetry("p1", f"bg-{k}", batch), key=shard_key("p1", "r0")
            )
            sent_samples += len(batch)
            k += 1
            await asyncio.sleep(0.05)

    try:
        app = build_faust_app(services)
        async with faust_app_running(app, stop_timeout=20):
            await produce(
                settings,
                TOPIC_LIFECYCLE,
                [(f"r{i}".encode(), delivered(f"r{i}", "p1")) for i in range(RESOURCES)],
            )
            await eventually(lambda: _ok(len(services.registry) >= RESOURCES))
            # warm-up: the first alert also waits for partition assignment
            await produce(
                settings, TOPIC_EVENTS, [event("warm", "band_change", "warm", {"to": "high"})]
            )
            await eventually(lambda: _ok("warm" in seen), timeout_s=60)
            p = AIOKafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap(), acks="all", linger_ms=0
            )
            await p.start()
            bg = asyncio.ensure_future(background(p))
            await asyncio.sleep(2)
            started: dict[str, float] = {}
            for i in range(ALERTS):
                rid = f"x{i}"
                key, value = event(f"lat-{i}", "band_change", rid, {"to": "high"})
                started[rid] = time.monotonic()
                await p.send_and_wait(TOPIC_EVENTS, value, key=key)
                await asyncio.sleep(0.1)
            await eventually(lambda: _ok(all(r in seen for r in started)), timeout_s=60)
            stop.set()
            await bg
            await p.stop()
        lat_ms = np.array([(seen[r] - started[r]) * 1000 for r in started])
        p50, p99 = np.percentile(lat_ms, 50), np.percentile(lat_ms, 99)
        print(f"\nalert latency under {sent_samples} background samples: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
              f"max {lat_ms.max():.0f} ms over {len(lat_ms)} alerts")  # fmt: skip
        assert p99 < 1000, f"p99 {p99:.0f} ms"
    finally:
        stop.set()
        listener.cancel()
        await pubsub.aclose()
        await redis.aclose()
        await services.domains["alerts"].drain()
        await services.domains["alerts"].aclose()
        await services.aclose()


async def _ok(v: Any) -> Any:
    return v
