"""POST /api/v1/ratings against the real services: who may rate what, clear errors, latest wins, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from dashboard.app import build_app
from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings
from opscenter.tokens import TokenStore
from opscenter.wire import TOPIC_INCIDENTS, TOPIC_LIFECYCLE, LifecycleEvent, Spec, json_encoder
from opscenter.wire_incidents import IncidentEvent, encode
from opscenter.workdays import SHANGHAI
from streams.ingest import Message
from streams.sla_agent import build_domain


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    await create_topics(settings)
    services = await open_services(settings)
    now = datetime.now(UTC)
    life = [LifecycleEvent(f"e-{rid}", rid, "delivered", now - timedelta(days=40), p, u, "d1", rid, Spec(2, 4, 50))
            for rid, p, u in (("r1", "pA", "u1"), ("r2", "pA", "u2"), ("r3", "pB", "u2"))]  # fmt: skip
    await services.registry_stage.process([Message(0, i, json_encoder.encode(e), TOPIC_LIFECYCLE)
                                           for i, e in enumerate(life)])  # fmt: skip
    opened = now - timedelta(days=1)
    incidents = [IncidentEvent("i1-0", "I1", "opened", opened, "pA", "P2", ["r1"]),
                 IncidentEvent("i2-0", "I2", "opened", opened, "pA", "P3", ["r2"]),
                 IncidentEvent("d1-0", "D1", "opened", opened, "pA", "P1", ["r1"], True)]  # fmt: skip
    await build_domain(services).stage.process([Message(0, i, encode(e), TOPIC_INCIDENTS) for i, e in enumerate(incidents)])
    tokens = TokenStore(services.store)
    for name, role, scope in (("u1", "unit", "u1"), ("u2", "unit", "u2"), ("bureau", "bureau", ""),
                              ("pA", "provider", "pA"), ("auditor", "auditor", "")):  # fmt: skip
        await tokens.add(f"tok-{name}", f"{name} officer", role, scope)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(services)), base_url="http://t") as c:
        yield services, c
    await services.aclose()


async def rate(client: httpx.AsyncClient, body: Any, who: str = "u1", raw: bytes | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer tok-{who}"} if who else {}
    return await client.post("/api/v1/ratings", content=raw if raw is not None else orjson.dumps(body), headers=headers)


async def test_a_second_rating_replaces_the_first_and_both_are_audited(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    r = await rate(client, {"provider_id": "pA", "incident_id": "I1", "score": 2})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert (doc["subject"], doc["replaced"], doc["drill"], doc["message"]) == ("incident:I1", False, False, "评价已记录")
    r = await rate(client, {"provider_id": "pA", "incident_id": "I1", "score": 5, "comment": "处置及时" * 125})
    assert r.status_code == 201 and r.json()["replaced"] is True and r.json()["message_en"].startswith("rating replaced")
    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    assert (await rate(client, {"provider_id": "pB", "month": month, "score": 4}, who="u2")).status_code == 201
    # a drill may be rated; the rating is kept and marked (excluded from the figures)
    r = await rate(client, {"provider_id": "pA", "incident_id": "D1", "score": 1})
    assert r.status_code == 201 and r.json()["drill"] is True

    rows = await services.store.query(
        "SELECT unit_id, provider_id, subject, score, lengthUTF8(comment), drill, rated_by FROM ratings FINAL ORDER BY subject"
    )
    assert rows == [("u1", "pA", "incident:D1", 1, 0, 1, "u1 officer"), ("u1", "pA", "incident:I1", 5, 500, 0, "u1 officer"),
                    ("u2", "pB", f"month:{month}", 4, 0, 0, "u2 officer")]  # fmt: skip
    audit = (await client.get("/api/v1/audit?action=rating", headers={"authorization": "Bearer tok-auditor"})).json()
    assert sorted((e["actor"], e["target"]) for e in audit["entries"]) == [
        ("u1 officer", "pA/incident:D1"), ("u1 officer", "pA/incident:I1"), ("u1 officer", "pA/incident:I1"),
        ("u2 officer", f"pB/month:{month}")]  # fmt: skip


async def test_bad_ratings_get_clear_errors_and_store_nothing(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    now = datetime.now(SHANGHAI)
    next_month = (now.replace(day=28) + timedelta(days=5)).strftime("%Y-%m")
    good = {"provider_id": "pA", "incident_id": "I1", "score": 4}
    cases = [
        (rate(client, None, raw=b"{score"), 400, "unparseable"),
        (rate(client, [1, 2]), 400, "schema"),
        (rate(client, {**good, "score": 0}), 400, "schema"),
        (rate(client, {**good, "score": 6}), 400, "schema"),
        (rate(client, {**good, "score": 4.5}), 400, "schema"),
        (rate(client, {**good, "score": "4"}), 400, "schema"),
        (rate(client, {**good, "score": True}), 400, "schema"),
        (rate(client, {"incident_id": "I1", "score": 4}), 400, "schema"),  # no provider
        (rate(client, {**good, "comment": "x" * 501}), 400, "schema"),
        (rate(client, {**good, "stars": 4}), 400, "schema"),  # an unknown field: probably a typo
        (rate(client, {**good, "month": "2026-10"}), 400, "bad_subject"),
        (rate(client, {"provider_id": "pA", "score": 4}), 400, "bad_subject"),
        (rate(client, {"provider_id": "pA", "month": "2026-13", "score": 4}), 400, "bad_month"),
        (rate(client, {"provider_id": "pA", "month": "2026-1", "score": 4}), 400, "bad_month"),
        (rate(client, {"provider_id": "pA", "month": next_month, "score": 4}), 400, "future_month"),
        (rate(client, {"provider_id": "pA", "incident_id": "NOPE", "score": 4}), 404, "unknown_incident"),
        (rate(client, {"provider_id": "pA", "incident_id": "I2", "score": 4}), 403, "not_affected"),  # u2's resource
        (rate(client, {"provider_id": "pB", "incident_id": "I1", "score": 4}), 403, "foreign_incident"),
        (rate(client, {"provider_id": "pB", "month": "2026-10", "score": 4}), 403, "not_a_customer"),  # u1: no pB
        (rate(client, good, who="bureau"), 403, "forbidden"),
        (rate(client, good, who="pA"), 403, "forbidden"),
        (rate(client, good, who=""), 401, "unauthenticated"),
        (rate(client, None, raw=b"{" + b" " * 9000 + b"}"), 413, "too_large"),
    ]
    for call, status, code in cases:
        r = await call
        assert (r.status_code, r.json()["error"]) == (status, code), r.text
        assert r.json()["message"] and r.json()["message_en"]
    assert await services.store.query("SELECT count() FROM ratings") == [(0,)]
    audit = (await client.get("/api/v1/audit?action=rating", headers={"authorization": "Bearer tok-auditor"})).json()
    assert audit["entries"] == []  # refused requests change nothing and are not audited as ratings
