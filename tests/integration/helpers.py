"""Helpers for integration tests: build telemetry, produce, consume, wait."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from opscenter.settings import Settings
from opscenter.wire import LifecycleEvent, Spec, json_encoder


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()


def telemetry(provider: str, batch_id: str, samples: list[tuple[str, int, float, float, float]]) -> bytes:
    return orjson.dumps(
        {
            "provider_id": provider,
            "batch_id": batch_id,
            "samples": [
                {"resource_id": r, "ts": iso(t), "cpu_pct": c, "mem_pct": m, "storage_pct": s}
                for r, t, c, m, s in samples
            ],
        }
    )


def delivered(rid: str, provider: str, unit: str = "u-1", district: str = "d-1") -> bytes:
    ev = LifecycleEvent(
        f"ev-{rid}", rid, "delivered", datetime.now(timezone.utc), provider, unit, district, rid, Spec(4, 8, 100), 15
    )
    return json_encoder.encode(ev)


async def produce(settings: Settings, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap(), acks="all")
    await p.start()
    try:
        for key, value in messages:
            await p.send_and_wait(topic, value=value, key=key)
    finally:
        await p.stop()


async def consume_all(settings: Settings, topic: str, expect: int, timeout_s: float = 20.0) -> list[Any]:
    c = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap(), auto_offset_reset="earliest",
        group_id=None, enable_auto_commit=False,
    )  # fmt: skip
    await c.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < expect and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=200)
            for msgs in batch.values():
                out.extend(orjson.loads(m.value) for m in msgs)
    finally:
        await c.stop()
    return out


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 30.0, every_s: float = 0.2) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with its last value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise AssertionError(f"condition not met in {timeout_s}s; last value: {last!r}")


def client_as(services: Any, role: str = "bureau", scope: str = "") -> Any:
    """An httpx client on the web app authenticated as ``role`` (a bearer token stored hashed)."""
    import httpx

    from dashboard.app import build_app
    from opscenter.tokens import digest

    token = f"test-{role}-{scope or 'all'}"
    services.store.client.insert(
        "api_tokens", [[digest(token), f"test {role}", role, scope, 0, time.time_ns()]],
        column_names=["token_sha256", "name", "role", "scope", "revoked", "version"],
    )  # fmt: skip
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(services)), base_url="http://test",
        headers={"authorization": f"Bearer {token}"},
    )  # fmt: skip
