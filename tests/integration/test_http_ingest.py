"""POST /api/v1/telemetry against the real services: tokens, per-sample verdicts, errors, then storage."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import AsyncIterator

import httpx
import orjson
import pytest
from faust.contrib.asgi import faust_app_running

from dashboard.app import build_app
from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings
from opscenter.tokens import TokenStore
from opscenter.wire import TOPIC_LIFECYCLE
from streams.app import build_faust_app
from tests.integration.helpers import delivered, eventually, iso, produce

M0 = (int(datetime.now(timezone.utc).timestamp() * 1000) // 60_000 - 3) * 60_000


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    await create_topics(settings)
    services = await open_services(settings)
    tokens = TokenStore(services.store)
    await tokens.add("tok-p1", "p1", "provider", "p1")
    await tokens.add("tok-p2", "p2", "provider", "p2")
    await tokens.add("tok-kiosk", "wall", "kiosk", "")
    await produce(settings, TOPIC_LIFECYCLE, [(b"a", delivered("a1", "p1")), (b"b", delivered("b1", "p2"))])
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield services, client
    await services.aclose()


def body(*samples: tuple[str, int, float], batch_id: str = "h1") -> bytes:
    return orjson.dumps({"batch_id": batch_id, "samples": [
        {"resource_id": r, "ts": iso(t), "cpu_pct": c, "mem_pct": 10.0, "storage_pct": 20.0} for r, t, c in samples
    ]})  # fmt: skip


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_accepts_lists_rejects_and_stores(stack) -> None:  # type: ignore[no-untyped-def]
    services, client = stack
    async with faust_app_running(build_faust_app(services), stop_timeout=20):
        await _accepts_lists_rejects_and_stores(services, client)


async def _accepts_lists_rejects_and_stores(services: Services, client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/telemetry",
        content=body(("a1", M0, 10.0), ("a1", M0 + 15_000, 30.0), ("b1", M0, 5.0), ("a1", M0 + 20_000, 101.0)),
        headers=auth("tok-p1"),
    )
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["accepted"] == 2, doc
    assert [(x["index"], x["reason"]) for x in doc["rejected"]] == [(2, "foreign_resource"), (3, "out_of_range")]

    async def rollup() -> list:
        return await services.store.query(
            "SELECT sum(samples), sum(cpu_sum) / sum(samples), max(cpu_max) FROM rollup_1m "
            "WHERE resource_id = 'a1' HAVING sum(samples) > 0"
        )

    assert await eventually(rollup) == [(2, 20.0, 30.0)]
    # the same batch id again: accepted over HTTP, but the worker stores nothing twice
    r = await client.post("/api/v1/telemetry", content=body(("a1", M0, 10.0), ("a1", M0 + 15_000, 30.0)),
                          headers=auth("tok-p1"))  # fmt: skip
    assert r.status_code == 202
    metrics = (await client.get("/metrics")).text
    assert 'opscenter_http_rejected_samples_total{provider="p1",reason="foreign_resource"} 1.0' in metrics


@pytest.mark.parametrize(
    "headers, content, status, code",
    [
        ({}, b"{}", 401, "unauthenticated"),
        ({"authorization": "Bearer nope"}, b"{}", 401, "unauthenticated"),
        ({"authorization": "Bearer tok-kiosk"}, b"{}", 403, "forbidden"),
        ({"authorization": "Bearer tok-p1"}, b"{oops", 400, "unparseable"),
        ({"authorization": "Bearer tok-p1"}, b'{"samples": []}', 400, "schema"),
        ({"authorization": "Bearer tok-p1"}, b'{"batch_id": "\xff", "samples": []}', 400, "unparseable"),
        ({"authorization": "Bearer tok-p1"}, b'{"provider_id": "p2", "batch_id": "x", "samples": []}', 403,
         "foreign_provider"),
    ],
)
async def test_errors(stack, headers: dict, content: bytes, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    _, client = stack
    r = await client.post("/api/v1/telemetry", content=content, headers=headers)
    assert (r.status_code, r.json()["error"]) == (status, code)
    assert r.json()["message"] and r.json()["message_en"]


async def test_only_foreign_samples_is_403(stack) -> None:  # type: ignore[no-untyped-def]
    _, client = stack
    r = await client.post("/api/v1/telemetry", content=body(("b1", M0, 5.0)), headers=auth("tok-p1"))
    assert r.status_code == 403 and r.json()["accepted"] == 0


async def test_body_too_large_is_413(stack) -> None:  # type: ignore[no-untyped-def]
    services, client = stack
    big = b'{"batch_id": "x", "samples": [' + b" " * services.settings.ingest_max_body_bytes + b"]}"
    r = await client.post("/api/v1/telemetry", content=big, headers=auth("tok-p1"))
    assert r.status_code == 413


async def test_health_ready_and_security_headers(stack) -> None:  # type: ignore[no-untyped-def]
    _, client = stack
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert {k: v["ok"] for k, v in r.json()["checks"].items()} == {"broker": True, "redis": True, "clickhouse": True}
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
