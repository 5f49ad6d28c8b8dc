"""GET /api/v1/quality against real chDB: hand-computed figures of seeded telemetry, the provider scope, clear
errors, and the "under supervision" flag agreeing day by day with the fee assessment (§17, §34)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest

from dashboard.api_billing import today_cst
from dashboard.app import build_app
from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import LifecycleEvent, Spec

CST = timezone(timedelta(hours=8))
LIFECYCLE_COLUMNS = ["event_id", "resource_id", "type", "ts", "provider_id", "unit_id", "district_id", "vcpu", "mem_gb",
                     "storage_gb"]  # fmt: skip
INVENTORY_COLUMNS = ["resource_id", "provider_id", "unit_id", "district_id", "name", "vcpu", "mem_gb", "storage_gb",
                     "state", "interval_s", "updated", "version"]  # fmt: skip
SAMPLE_COLUMNS = ["ts", "resource_id", "provider_id", "cpu_pct", "mem_pct", "storage_pct", "late", "ingest_ts",
                  "batch_id", "src_topic", "src_partition", "src_offset"]  # fmt: skip
DEADLETTER_COLUMNS = ["ingest_ts", "reason", "detail", "provider_id", "batch_id", "payload", "src_topic",
                      "src_partition", "src_offset", "idx"]  # fmt: skip
D0 = today_cst() - timedelta(days=10)  # recent: raw samples are kept 90 days
DAYS = [D0 + timedelta(days=i) for i in range(5)]
TOKENS = {"bureau": ("bureau", ""), "auditor": ("auditor", ""), "pq": ("provider", "pq"), "unit": ("unit", "u1")}


def local(day: date, hour: float = 0) -> datetime:
    return (datetime.combine(day, time(0), CST) + timedelta(hours=hour)).astimezone(UTC)


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    await create_topics(settings)
    services = await open_services(settings)
    app = build_app(services)
    for who, (role, scope) in TOKENS.items():
        await app.state.tokens.add(f"tok-{who}", f"test {who}", role, scope)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield services, c
    await services.aclose()


def seed_resource(s: Services, provider: str, rid: str, interval_s: int, delivered: datetime,
                  deregistered: datetime | None = None) -> None:  # fmt: skip
    c = s.store.client
    rows = [[f"{rid}-d", rid, "delivered", delivered, provider, "u1", "d1", 2, 4, 100]]
    if deregistered is not None:
        rows.append([f"{rid}-x", rid, "deregistered", deregistered, provider, "u1", "d1", None, None, None])
    c.insert("lifecycle_events", rows, column_names=LIFECYCLE_COLUMNS)
    c.insert("inventory", [[rid, provider, "u1", "d1", f"{rid} 系统", 2, 4, 100, rows[-1][2], interval_s, rows[-1][3], 1]],
             column_names=INVENTORY_COLUMNS)  # fmt: skip
    s.registry.apply(LifecycleEvent(f"{rid}-d", rid, "delivered", delivered, provider, "u1", "d1", rid, Spec(2, 4, 100),
                                    interval_s))  # fmt: skip


def seed_samples(s: Services, provider: str, rid: str, start: datetime, interval_s: int, n: int, lateness_s: float
                 ) -> None:  # fmt: skip
    """``n`` samples every ``interval_s`` from ``start``, each stored ``lateness_s`` after its time."""
    rows = []
    for i in range(n):
        ts = start + timedelta(seconds=i * interval_s)
        rows.append([ts, rid, provider, 5, 5, 5, 0, ts + timedelta(seconds=lateness_s), "b", "telemetry.v1#e", 0, i])
    s.store.client.insert("samples", rows, column_names=SAMPLE_COLUMNS)


def dead(provider: str, at: datetime, offset: int, reason: str, resource: str = "", topic: str = "telemetry.v1#e"
         ) -> list[Any]:  # fmt: skip
    payload = orjson.dumps({"resource_id": resource, "cpu_pct": 130}).decode() if resource else '{"not": "a batch"}'
    return [at, reason, "detail", provider, "b", payload, topic, 0, offset, 0]


def seed(s: Services) -> None:
    """pq: q1 (every 10 min) delivered on D0 at 06:00; q2 (hourly) deregistered on D2 at 12:00. px: q3."""
    seed_resource(s, "pq", "q1", 600, local(D0, 6))
    seed_resource(s, "pq", "q2", 3600, local(D0 - timedelta(days=30)), local(DAYS[2], 12))
    seed_resource(s, "px", "q3", 600, local(D0 - timedelta(days=30)))
    # q1: D0 from 06:00 all 108 | D1 all 144 | D2 129 (< 90 % of 144) | D3 130 (≥ 129.6) | D4 none
    for day, start_h, n in ((DAYS[0], 6, 108), (DAYS[1], 0, 144), (DAYS[2], 0, 129), (DAYS[3], 0, 130)):
        seed_samples(s, "pq", "q1", local(day, start_h), 600, n, lateness_s=2)
    seed_samples(s, "pq", "q2", local(DAYS[0]), 3600, 24 + 24 + 12, lateness_s=10)  # until its deregistration
    seed_samples(s, "px", "q3", local(DAYS[0]), 600, 5 * 144, lateness_s=1)
    s.store.client.insert("deadletters", [
        dead("pq", local(DAYS[1], 10), 1, "out_of_range", "q1"),
        dead("pq", local(DAYS[1], 11), 2, "out_of_range", "q1"),
        dead("pq", local(DAYS[1], 11), 2, "out_of_range", "q1"),  # the same dead letter replayed
        dead("pq", local(DAYS[3], 9), 3, "schema"),  # a whole message: the provider's, no resource
        dead("pq", local(DAYS[3], 9), 4, "duplicate_batch"),  # a retry of a delivered batch: not invalid
        dead("pq", local(DAYS[3], 9), 5, "invalid_lifecycle", topic="lifecycle.v1#e"),  # not telemetry
        dead("pq", local(DAYS[4] + timedelta(days=1), 9), 6, "out_of_range", "q1"),  # after the period
        dead("px", local(DAYS[1], 9), 7, "out_of_range", "q3"),  # another provider
    ], column_names=DEADLETTER_COLUMNS)  # fmt: skip


def auth(who: str) -> dict[str, str]:
    return {"authorization": f"Bearer tok-{who}"}


def period(**extra: str) -> dict[str, str]:
    return {"from": DAYS[0].isoformat(), "to": DAYS[-1].isoformat(), **extra}


async def test_hand_computed_quality_of_a_provider_its_resources_and_days(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    seed(services)
    r = await client.get("/api/v1/quality", params=period(provider="pq"), headers=auth("bureau"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["supervision_threshold_pct"], doc["threshold_source"]) == ("90", "deduction.yaml")
    (p,) = doc["providers"]
    # expected: q1 108 + 4 × 144 = 684, q2 24 + 24 + 12 (in service until D2 12:00) = 60; received 511 + 60
    assert (p["provider_id"], p["resources"], p["samples"], p["expected"], p["completeness_pct"]) == (
        "pq", 2, 571, 744.0, 76.75)  # fmt: skip
    # invalid: q1's two rejected samples (one replayed) + one whole message; accepted 571
    assert (p["invalid"], p["invalid_by_reason"], p["invalid_rate_pct"]) == (3, {"out_of_range": 2, "schema": 1}, 0.52)
    assert p["lateness_p50_s"] == pytest.approx(2.0, abs=0.01) and p["lateness_p95_s"] == pytest.approx(10.0, abs=0.5)
    assert (p["billing_days"], p["supervised_days"]) == (7, 4)
    q1, q2 = doc["resources"]
    assert (q1["resource_id"], q1["samples"], q1["expected"], q1["completeness_pct"], q1["invalid"],
            q1["invalid_rate_pct"], q1["interval_s"]) == ("q1", 511, 684.0, 74.71, 2, 0.39, 600)  # fmt: skip
    assert q1["lateness_p50_s"] == q1["lateness_p95_s"] == 2.0 and q1["lateness_max_s"] == 2.0
    assert (q1["billing_days"], q1["supervised_days"]) == (5, 2)
    assert (q2["resource_id"], q2["samples"], q2["expected"], q2["completeness_pct"], q2["in_service_s"]) == (
        "q2", 60, 60.0, 100.0, 2 * 86400 + 43200)  # fmt: skip
    assert q2["lateness_p95_s"] == 10.0 and (q2["billing_days"], q2["supervised_days"]) == (2, 2)

    days = (await client.get("/api/v1/quality", params=period(resource="q1"), headers=auth("bureau"))).json()["days"]
    got = [(d["day"], d["samples"], d["expected"], d["completeness_pct"], d["supervision_completeness_pct"],
            d["billing_day"], d["under_supervision"]) for d in days]  # fmt: skip
    assert got == [
        # delivered at 06:00: complete for its 18 hours in service, but the fee rule counts the whole day
        (DAYS[0].isoformat(), 108, 108.0, 100.0, 75.0, True, False),
        (DAYS[1].isoformat(), 144, 144.0, 100.0, 100.0, True, True),
        (DAYS[2].isoformat(), 129, 144.0, 89.58, 89.58, True, False),
        (DAYS[3].isoformat(), 130, 144.0, 90.28, 90.28, True, True),
        (DAYS[4].isoformat(), 0, 144.0, 0.0, 0.0, True, False),
    ]
    assert days[1]["invalid"] == 2 and all(d["day_complete"] for d in days)
    q2_days = (await client.get("/api/v1/quality", params=period(resource="q2"), headers=auth("auditor"))).json()["days"]
    # the deregistration day is in service until 12:00 but is no billing day (billing ends at deregistration)
    assert [(d["day"], d["expected"], d["billing_day"], d["under_supervision"]) for d in q2_days] == [
        (DAYS[0].isoformat(), 24.0, True, True), (DAYS[1].isoformat(), 24.0, True, True),
        (DAYS[2].isoformat(), 12.0, False, None)]  # fmt: skip


async def verdicts(client: httpx.AsyncClient, provider: str, rids: tuple[str, ...], params: dict[str, str]
                   ) -> tuple[dict[tuple[str, str], bool], dict[tuple[str, str], bool]]:  # fmt: skip
    """Per billing day: under supervision according to the quality API, and according to the assessment."""
    quality: dict[tuple[str, str], bool] = {}
    for rid in rids:
        r = await client.get("/api/v1/quality", params={**params, "resource": rid}, headers=auth("bureau"))
        for d in r.json()["days"]:
            if d["billing_day"]:
                quality[(rid, d["day"])] = d["under_supervision"]
    r = await client.get("/api/v1/assessments", params={**params, "provider": provider}, headers=auth("bureau"))
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["supervision_threshold_pct"] == "90"
    assessed: dict[tuple[str, str], bool] = {}
    for line in a["lines"] + a["exclusions"]:
        first, last = date.fromisoformat(line["first_day"]), date.fromisoformat(line["last_day"])
        for i in range((last - first).days + 1):
            assessed[(line["resource_id"], (first + timedelta(days=i)).isoformat())] = line["status"] != "unsupervised"
    return quality, assessed


async def test_under_supervision_agrees_with_the_fee_assessment(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    seed(services)
    quality, assessed = await verdicts(client, "pq", ("q1", "q2"), period())
    assert assessed == quality  # the same billing days, the same verdict on each
    assert sorted(k for k, ok in quality.items() if not ok) == [
        ("q1", DAYS[0].isoformat()), ("q1", DAYS[2].isoformat()), ("q1", DAYS[4].isoformat())]  # fmt: skip
    # today is not over: both expect only its elapsed part (here: yesterday complete, today half the samples)
    today, now = today_cst(), datetime.now(UTC)
    elapsed_s = (now - local(today)).total_seconds()
    for rid, every_s in (("t1", 1200), ("t2", 600)):  # today: t1 half its samples, t2 all so far
        seed_resource(services, "pt", rid, 600, local(today - timedelta(days=30)))
        seed_samples(services, "pt", rid, local(today - timedelta(days=1)), 600, 144, lateness_s=1)
        seed_samples(services, "pt", rid, local(today), every_s, int(elapsed_s // every_s) + 1, lateness_s=1)
    quality, assessed = await verdicts(client, "pt", ("t1", "t2"), {"from": (today - timedelta(days=1)).isoformat(),
                                                                        "to": today.isoformat()})  # fmt: skip
    assert assessed == quality and quality[("t1", (today - timedelta(days=1)).isoformat())] is True
    assert quality[("t2", today.isoformat())] is True  # not "unsupervised" for a day that is not over
    if elapsed_s > 3600:  # (in the first minutes of a day one sample is already "enough")
        assert quality[("t1", today.isoformat())] is False


async def test_a_provider_sees_only_its_own_and_bad_input_gets_a_clear_error(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    seed(services)
    own = (await client.get("/api/v1/quality", params=period(), headers=auth("pq"))).json()
    assert [p["provider_id"] for p in own["providers"]] == ["pq"] and own["provider"] == "pq"
    assert {x["resource_id"] for x in own["resources"]} == {"q1", "q2"}
    everyone = (await client.get("/api/v1/quality", params=period(), headers=auth("bureau"))).json()
    assert [p["provider_id"] for p in everyone["providers"]] == ["pq", "px"]
    r = await client.get("/api/v1/quality", params=period(provider="px"), headers=auth("pq"))
    assert r.status_code == 403 and r.json()["error"] == "foreign_provider"
    r = await client.get("/api/v1/quality", params=period(resource="q3"), headers=auth("pq"))
    assert r.status_code == 404  # another provider's resource: not disclosed
    assert (await client.get("/api/v1/quality", params=period(), headers=auth("unit"))).status_code == 403
    for params, code in (({"from": "2026-13-01"}, "bad_parameter"), ({"from": "2026-03-05", "to": "2026-03-01"}, "bad_range"),
                         ({"resource": "nope"}, "not_found"), ({"provider": "px", "resource": "q1"}, "bad_parameter")):  # fmt: skip
        r = await client.get("/api/v1/quality", params=params, headers=auth("bureau"))
        body = r.json()
        assert r.status_code in (400, 404) and body["error"] == code and body["message"] and body["message_en"], body
