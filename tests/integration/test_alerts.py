"""Alerts end to end on the real broker, Valkey and chDB: events.v1 → one notice, one signed webhook."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from faust.contrib.asgi import faust_app_running
from redis.asyncio import Redis

from alerts import persist
from alerts.config import parse_config
from alerts.notifiers.webhook import SIGNATURE_HEADER, verify
from alerts.service import AlertService, from_services
from opscenter.services import create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import TOPIC_EVENTS, Event, json_encoder
from streams.app import build_faust_app
from tests.integration.helpers import eventually, produce
from tests.integration.test_alerts_notify import WebhookReceiver

SECRET = "hook-secret"


def rules(url: str, group_wait_s: float = 0.2) -> str:
    return f"""
defaults: {{group_wait_s: {group_wait_s}, repeat_interval_s: 3600, resolved_retention_s: 600}}
receivers:
  oncall: {{webhooks: [{{url: "{url}", secret: {SECRET}, timeout_s: 2}}]}}
  lead: {{}}
escalation:
  P1: [{{after_s: 0, receivers: [oncall]}}, {{after_s: 2, receivers: [lead]}}]
  P3: [{{after_s: 0, receivers: [oncall]}}]
rules:
  - name: utilization_high
    type: event
    kind: band_change
    where: {{data.to: high}}
    resolve_on: {{kind: band_change, where: {{data.to: {{ne: high}}}}}}
    labels: [provider, unit, district, resource]
    severity: P3
    summary: {{zh: "资源 {{resource}} 利用率偏高", en: "{{resource}} utilization high"}}
  - name: sla_breach
    type: event
    kind: sla_breach
    resolve_on: {{kind: incident_resolved}}
    labels: [provider, subject]
    severity: {{from_event: true, default: P2}}
    summary: {{zh: "事件 {{subject}} 超时", en: "incident {{subject}} breached"}}
"""


def event(
    event_id: str, kind: str, subject: str, data: dict[str, Any], severity: str = ""
) -> tuple[bytes, bytes]:
    ev = Event(event_id, kind, datetime.now(UTC), subject, provider_id="p1", unit_id="u-1",
               district_id="d-1", resource_id=subject if kind == "band_change" else "", severity=severity, data=data)  # fmt: skip
    return subject.encode(), json_encoder.encode(ev)


class Feed:
    """Every message on the alert channel, collected in the background."""

    def __init__(self, url: str) -> None:
        self.redis = Redis.from_url(url)
        self.messages: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Feed:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(persist.CHANNEL)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation

        async def run() -> None:
            async for msg in pubsub.listen():
                if msg["type"] == "message":
                    self.messages.append(orjson.loads(msg["data"]))

        self._task = asyncio.ensure_future(run())
        return self

    def of(self, type_: str, status: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m["type"] == type_ and (status is None or m.get("status") == status)
        ]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.redis.aclose()


@pytest.fixture
async def receiver() -> Any:
    r = await WebhookReceiver().start()
    yield r
    await r.stop()


async def test_event_to_one_notice_and_one_signed_webhook_then_resolved(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    await create_topics(settings)
    services = await open_services(settings)
    feed = await Feed(settings.redis()).start()
    svc = from_services(services, parse_config(rules(receiver.url())))
    try:
        app = build_faust_app(services)
        async with faust_app_running(app, stop_timeout=20):
            t0 = time.monotonic()
            await produce(
                settings,
                TOPIC_EVENTS,
                [event("ev-1", "band_change", "r-7", {"to": "high", "metric": "cpu"})],
            )
            await eventually(lambda: _true(feed.of("notification")), timeout_s=60, every_s=0.02)
            latency_s = time.monotonic() - t0
            await eventually(lambda: _true(receiver.received), timeout_s=10, every_s=0.02)
            # the producer repeats itself and a worker redelivers: still one page
            await produce(settings, TOPIC_EVENTS, [event("ev-1", "band_change", "r-7", {"to": "high"}),
                                                   event("ev-2", "band_change", "r-7", {"to": "high"})])  # fmt: skip
            await asyncio.sleep(1.5)
            (note,) = feed.of("notification")
            (hook,) = receiver.received
            assert note["status"] == "firing" and note["receivers"] == ["oncall"]
            (alert,) = note["alerts"]
            assert alert["rule"] == "utilization_high" and alert["labels"]["resource"] == "r-7"
            assert (
                alert["summary_zh"] == "资源 r-7 利用率偏高"
                and alert["summary_en"] == "r-7 utilization high"
            )
            assert orjson.loads(hook.body) == note
            assert verify(SECRET, hook.body, hook.headers[SIGNATURE_HEADER])
            # recovery → one resolved notification, on the feed and at the webhook
            await produce(
                settings, TOPIC_EVENTS, [event("ev-3", "band_change", "r-7", {"to": "normal"})]
            )
            await eventually(
                lambda: _true(feed.of("notification", "resolved")), timeout_s=30, every_s=0.05
            )
            await eventually(lambda: _true(len(receiver.received) == 2), timeout_s=10, every_s=0.05)
            await asyncio.sleep(0.5)
            assert (
                len(feed.of("notification", "resolved")) == 1 and len(feed.of("notification")) == 2
            )
            resolved = orjson.loads(receiver.received[1].body)
            assert resolved["status"] == "resolved" and resolved["alerts"][0]["state"] == "resolved"
            assert verify(
                SECRET, receiver.received[1].body, receiver.received[1].headers[SIGNATURE_HEADER]
            )
        await svc.drain()
        rows = await services.store.query(
            "SELECT from_state, to_state, actor FROM alert_transitions FINAL ORDER BY seq"
        )
        assert rows == [("", "firing", "system"), ("firing", "resolved", "system")]
        deliveries = await services.store.query(
            "SELECT status, count() FROM alert_deliveries FINAL GROUP BY status"
        )
        assert deliveries == [("delivered", 2)]
        print(f"event produced → notice on the feed: {latency_s * 1000:.0f} ms (group_wait 200 ms)")
    finally:
        await svc.aclose()
        await feed.stop()
        await services.aclose()


async def _true(v: Any) -> Any:
    return v


async def test_escalation_timer_survives_a_restart_and_state_rebuilds(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    """Timers live in Redis: a new service instance (a restarted worker) fires the escalation on time."""
    await create_topics(settings)
    services = await open_services(settings)
    feed = await Feed(settings.redis()).start()
    config = parse_config(rules(receiver.url(), group_wait_s=0.0))
    first = AlertService(services.redis, services.store, config)
    try:
        await first.start()
        from alerts.model import Observation

        obs = Observation("sla_breach", int(time.time() * 1000), {"provider": "p1", "subject": "inc-1",
                          "severity": "P1"}, {"clock": "respond"}, event_id="ev-9")  # fmt: skip
        await first.observe([obs])
        await first.observe([obs])  # a redelivery is skipped by its event id
        await first.drain()
        await first.aclose()  # the worker dies; nothing in memory survives
        second = AlertService(Redis.from_url(settings.redis()), services.store, config)
        await second.start()
        assert not feed.of("escalation")
        deadline = time.monotonic() + 10
        while not feed.of("escalation") and time.monotonic() < deadline:
            await second.fire_due()  # what the Faust timer does every 200 ms
            await asyncio.sleep(0.1)
        (esc,) = feed.of("escalation")
        assert esc["receivers"] == ["lead"] and esc["step"] == 1
        assert len(feed.of("notification")) == 1
        # acknowledge through the service (as the API does), then lose Redis entirely
        fp = esc["alerts"][0]["fingerprint"]
        await second.acknowledge(fp, "duty-officer", "处理中")
        await second.drain()
        await second.aclose()
        await services.redis.flushall()
        third = AlertService(Redis.from_url(settings.redis()), services.store, config)
        await third.start()
        state = await third.snapshot()
        (alert,) = state.alerts.values()
        assert (alert.fingerprint, alert.state, alert.ack_by) == (
            fp,
            "acknowledged",
            "duty-officer",
        )
        # the rebuilt alert still resolves from its event
        await third.observe([Observation("incident_resolved", int(time.time() * 1000),
                                         {"provider": "p1", "subject": "inc-1"}, {}, event_id="ev-10")])  # fmt: skip
        assert (await third.snapshot()).alerts[fp].state == "resolved"
        await third.drain()
        await third.aclose()
    finally:
        await feed.stop()
        await services.aclose()
