"""Per-provider ingest rate limits: the token bucket (pure), then the 429 of the HTTP ingest.

The HTTP part runs the real Starlette app through ``httpx.ASGITransport`` with a stand-in
``services`` (a real ``Registry``; ``send`` appends to a list instead of producing to a broker):
the limit is decided before anything is produced, so no broker is needed to test it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, AsyncIterator

import httpx
import orjson
import pytest

from dashboard.app import build_app
from dashboard.ratelimit import Decision, RateLimiter
from opscenter.inventory import Registry, Resource
from opscenter.settings import Settings
from opscenter.tokens import Principal


def test_full_bucket_lets_a_burst_through_then_refuses() -> None:
    lim = RateLimiter(rate_per_s=100, burst=500)
    assert lim.take("p1", 300, now_s=0) == Decision(True)
    assert lim.take("p1", 200, now_s=0) == Decision(True)
    assert lim.take("p1", 1, now_s=0) == Decision(False, 1)  # empty: 1 sample at 100/s → 0.01 s → 1 s


def test_refill_at_the_rate_up_to_the_burst() -> None:
    lim = RateLimiter(rate_per_s=100, burst=500)
    lim.take("p1", 500, now_s=0)
    assert lim.tokens("p1", now_s=2) == pytest.approx(200)
    assert lim.take("p1", 250, now_s=2) == Decision(False, 1)  # 50 missing → 0.5 s → 1 s
    assert lim.take("p1", 200, now_s=2) == Decision(True)
    assert lim.tokens("p1", now_s=1000) == 500  # never more than the burst


def test_retry_after_is_the_wait_for_the_missing_samples_rounded_up() -> None:
    lim = RateLimiter(rate_per_s=10, burst=100)
    lim.take("p1", 100, now_s=0)
    assert lim.take("p1", 35, now_s=0) == Decision(False, 4)  # 35 / 10 = 3.5 s → 4
    assert lim.take("p1", 35, now_s=3.5) == Decision(True)  # exactly then it passes


def test_a_batch_bigger_than_the_burst_passes_on_a_full_bucket_and_leaves_debt() -> None:
    lim = RateLimiter(rate_per_s=100, burst=500)
    assert lim.take("p1", 800, now_s=0) == Decision(True)
    assert lim.tokens("p1", now_s=0) == -300
    assert lim.check("p1", now_s=0) == Decision(False, 4)  # 301 samples to wait for: 3.01 s → 4
    assert lim.take("p1", 800, now_s=7.99) == Decision(False, 1)
    assert lim.take("p1", 800, now_s=8) == Decision(True)  # long-run rate: 1600 samples in 8 s = 100/s + burst


def test_providers_have_their_own_buckets_and_zero_disables() -> None:
    lim = RateLimiter(rate_per_s=1, burst=10)
    assert lim.take("p1", 10, now_s=0).allowed and not lim.take("p1", 1, now_s=0).allowed
    assert lim.take("p2", 10, now_s=0).allowed
    off = RateLimiter(rate_per_s=0, burst=1)
    assert all(off.take("p1", 10**9, now_s=0).allowed for _ in range(3))


def test_a_clock_stepping_back_refills_nothing() -> None:
    lim = RateLimiter(rate_per_s=100, burst=100)
    lim.take("p1", 100, now_s=50)
    assert lim.tokens("p1", now_s=10) == 0
    assert lim.tokens("p1", now_s=50.5) == pytest.approx(50)


# --- through the app ------------------------------------------------------------------------


class _Tokens:
    async def lookup(self, token: str) -> Principal | None:
        return {"tok-p1": Principal("p1", "provider", "p1"), "tok-p2": Principal("p2", "provider", "p2")}.get(token)


class _Reader:
    async def catch_up(self) -> bool:
        return False


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, list[bytes]]]:
    now = datetime.now(timezone.utc)
    registry = Registry({rid: Resource(rid, p, "u", "d", rid, 4, 8, 100, "delivered", 15, now)
                         for rid, p in [("r1", "p1"), ("r2", "p2")]})  # fmt: skip
    sent: list[bytes] = []

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        sent.append(value)

    settings = Settings(ingest_rate_samples_s=10, ingest_burst_samples=100, demo=False)
    app = build_app(SimpleNamespace(settings=settings, registry=registry, lifecycle_reader=_Reader(), send=send,
                                    store=None))  # fmt: skip
    app.state.tokens = _Tokens()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c, sent


def body(rid: str, n: int) -> bytes:
    ts = datetime.now(timezone.utc).isoformat()
    return orjson.dumps({"batch_id": "b", "samples": [
        {"resource_id": rid, "ts": ts, "cpu_pct": 1.0, "mem_pct": 2.0, "storage_pct": 3.0}
    ] * n})  # fmt: skip


async def test_over_the_limit_is_429_with_retry_after(client: Any) -> None:
    c, sent = client
    post: Any = lambda token, rid, n: c.post(  # noqa: E731
        "/api/v1/telemetry", content=body(rid, n), headers={"authorization": f"Bearer {token}"}
    )
    for n in (60, 30):
        r = await post("tok-p1", "r1", n)
        assert r.status_code == 202 and r.json()["accepted"] == n
    r = await post("tok-p1", "r1", 50)  # ~10 of the burst of 100 left: 40 samples at 10/s → 4 s
    assert r.status_code == 429
    assert r.headers["retry-after"] == "4"
    doc = r.json()
    assert doc["error"] == "rate_limited" and doc["retry_after_s"] == 4
    assert "重试" in doc["message"] and "retry after 4 s" in doc["message_en"]
    assert (await post("tok-p1", "r1", 10)).status_code == 202  # a smaller batch still fits
    r = await post("tok-p1", "r1", 1)  # empty now: refused before the body is read
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert sum(len(orjson.loads(v)["samples"]) for v in sent) == 100  # nothing of a refused batch was produced
    # another provider has its own bucket
    assert (await post("tok-p2", "r2", 100)).status_code == 202
    metrics = (await c.get("/metrics")).text
    assert 'opscenter_http_ingest_total{provider="p1",status="429"}' in metrics
