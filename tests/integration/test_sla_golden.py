"""Golden test of provider service quality (R3, §33) over October 2026, figures computed by hand.

Resources go through the worker's registry stage (lifecycle.v1), incidents through its incident
stage (incidents.v1), SLA signals through its deadline timer, ratings through
``POST /api/v1/ratings`` as the units; the figures are read from ``GET /api/v1/sla`` and
``streams.sla_figures.period_figures``. Every expected number below is written out with its
arithmetic. October has 31 days = 44 640 min per resource; days are Asia/Shanghai days.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

import httpx
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
from streams.sla_figures import period_figures

MIN = 60_000
H = 60 * MIN


def at(day: int, hour: int = 0, minute: int = 0, month: int = 10) -> int:
    return int(datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).timestamp() * 1000)


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, SHANGHAI)


# resource, provider, unit, lifecycle steps (type, ms)
RESOURCES = [
    ("a1", "pA", "u1", [("delivered", at(1, 10, month=9))]),  # all October: 31 days
    ("a2", "pA", "u1", [("delivered", at(15, month=9))]),  # 31 days
    ("a3", "pA", "u1", [("delivered", at(16))]),  # from 16 Oct 00:00: 16 days
    ("a4", "pA", "u2", [("delivered", at(1, month=9)), ("deregistration_requested", at(9)),
                        ("deregistered", at(11))]),  # until 11 Oct 00:00: 10 days
    ("b1", "pB", "u1", [("delivered", at(1, month=9))]),  # 31 days
    ("b2", "pB", "u2", [("delivered", at(1, 12))]),  # from 1 Oct 12:00: 30.5 days
    ("c1", "pC", "u3", [("delivered", at(1, month=9))]),  # 31 days
]  # fmt: skip

# incident, provider, severity, drill, resources, opened ms, steps (type, minutes after opening)
INCIDENTS = [
    ("A1", "pA", "P1", False, ["a1"], at(5, 10), [("acknowledged", 10), ("resolved", 120)]),
    ("A2", "pA", "P2", False, ["a1", "a2"], at(5, 11), [("acknowledged", 20), ("resolved", 180)]),
    ("A3", "pA", "P3", False, ["a2"], at(8, 9), [("acknowledged", 180), ("resolved", 300)]),  # P3: not "down"
    ("A4", "pA", "P1", True, ["a1"], at(12, 10), [("acknowledged", 1), ("resolved", 30)]),  # a drill
    ("A5", "pA", "P1", False, ["a3"], at(30, 19), [("acknowledged", 5)]),  # never resolved
    ("A6", "pA", "P2", False, ["a4"], at(10, 22), [("acknowledged", 15), ("resolved", 240)]),  # past deregistration
    ("B1", "pB", "P1", False, ["b1"], at(3, 8), [("acknowledged", 30), ("resolved", 360)]),
    ("B2", "pB", "P4", False, ["b2"], at(20, 10), [("acknowledged", 120), ("resolved", 600)]),
    ("B3", "pB", "P2", True, ["b2"], at(21, 9), [("resolved", 60)]),  # a drill
]

# unit, body; in this order (a later rating of the same subject replaces the earlier one)
RATINGS = [
    ("u1", {"provider_id": "pA", "incident_id": "A1", "score": 4}),
    ("u1", {"provider_id": "pA", "incident_id": "A1", "score": 5, "comment": "恢复及时"}),  # replaces the 4
    ("u1", {"provider_id": "pA", "month": "2026-10", "score": 3}),
    ("u2", {"provider_id": "pA", "incident_id": "A6", "score": 2}),
    ("u1", {"provider_id": "pA", "incident_id": "A4", "score": 1}),  # a drill: excluded
    ("u1", {"provider_id": "pB", "month": "2026-10", "score": 4}),
    ("u2", {"provider_id": "pB", "month": "2026-10", "score": 5}),
    ("u2", {"provider_id": "pB", "incident_id": "B2", "score": 3}),
    ("u2", {"provider_id": "pB", "month": "2026-09", "score": 1}),  # September: not October's
    ("u3", {"provider_id": "pC", "month": "2026-10", "score": 5}),
    ("u3", {"provider_id": "pC", "month": "2026-10", "score": 4}),  # replaces the 5
]


@pytest.fixture
async def seeded(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    await create_topics(settings)
    services = await open_services(settings)
    lifecycle = []
    for rid, provider, unit, steps in RESOURCES:
        for i, (type_, ms) in enumerate(steps):
            spec = Spec(4, 8, 100) if i == 0 else None
            ev = LifecycleEvent(f"{rid}-{i}", rid, type_, dt(ms), provider, unit, "d1", rid, spec)  # type: ignore[arg-type]
            lifecycle.append(Message(0, len(lifecycle), json_encoder.encode(ev), TOPIC_LIFECYCLE))
    await services.registry_stage.process(lifecycle)

    domain = build_domain(services)  # shipped targets: P1 15 min / 4 h, P2 30 min / 8 h, P3 2 h / 24 h, P4 8 h / 72 h
    values = []
    for inc, provider, sev, drill, rids, opened, steps in INCIDENTS:
        values.append(encode(IncidentEvent(f"{inc}-0", inc, "opened", dt(opened), provider, sev, rids, drill)))  # type: ignore[arg-type]
        values += [encode(IncidentEvent(f"{inc}-{i + 1}", inc, t, dt(opened + m * MIN), provider))  # type: ignore[arg-type]
                   for i, (t, m) in enumerate(steps)]  # fmt: skip
    await domain.stage.process([Message(0, i, v, TOPIC_INCIDENTS) for i, v in enumerate(values)])
    fired = await domain.timer.tick(int(time.time() * 1000))  # every deadline of October has passed
    assert sorted((e.subject, e.data["deadline"]) for e in fired if e.kind == "sla_breach") == [
        ("A3", "response"), ("A5", "restore"), ("B1", "response"), ("B1", "restore")]  # fmt: skip

    app = build_app(services)
    tokens = TokenStore(services.store)
    for unit in ("u1", "u2", "u3"):
        await tokens.add(f"tok-{unit}", f"{unit} officer", "unit", unit)
    await tokens.add("tok-b", "officer", "bureau", "")
    await tokens.add("tok-pB", "pB", "provider", "pB")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for unit, body in RATINGS:
            r = await client.post("/api/v1/ratings", json=body, headers={"authorization": f"Bearer tok-{unit}"})
            assert r.status_code == 201, r.text
        yield services, client
    await services.aclose()


async def _sla(client: httpx.AsyncClient, token: str, **params: str) -> dict[str, Any]:
    r = await client.get("/api/v1/sla", params=params, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


FIELDS = ("incidents", "drill_incidents", "mtta_s", "mttr_s", "resource_months", "fault_rate", "in_service_min",
          "down_min", "availability_pct", "satisfaction")  # fmt: skip


async def test_monthly_quality_per_provider_equals_the_hand_computation(seeded) -> None:  # type: ignore[no-untyped-def]
    _, client = seeded
    doc = await _sla(client, "tok-b", **{"from": "2026-10-01", "to": "2026-11-01", "group_by": "month"})
    quality = {(q["provider_id"], q["period"]): [q[f] for f in FIELDS] for q in doc["quality"]}
    assert quality == {
        ("pA", "2026-10-01"): [
            5,  # A1, A2, A3, A5, A6 (A4 is a drill)
            ["A4"],  # drills: listed, counted nowhere
            2760.0,  # MTTA (10 + 20 + 180 + 5 + 15) / 5 = 46 min
            12600.0,  # MTTR (120 + 180 + 300 + 240) / 4 = 210 min (A5 not restored)
            2.8387,  # resource-days (31 + 31 + 16 + 10) / 31 = 88 / 31
            176.1364,  # 5 × 100 / (88 / 31) = 15500 / 88
            126720.0,  # 88 days × 1440 min
            2280.0,  # a1 10:00–14:00 on 5 Oct (A1 ∪ A2) 240 + a2 11:00–14:00 180 + a3 30 Oct 19:00 → 1 Nov 1740
                     # + a4 10 Oct 22:00 → deregistered 11 Oct 00:00 120 (A3 is P3: not down)
            98.2008,  # 100 × (1 − 2280 / 126720)
            {"mean": 3.3333, "count": 3},  # A1 5 (the 4 was replaced), October 3, A6 2: 10 / 3; A4's 1 is a drill's
        ],
        ("pB", "2026-10-01"): [
            2,  # B1, B2 (B3 is a drill)
            ["B3"],
            4500.0,  # MTTA (30 + 120) / 2 = 75 min
            28800.0,  # MTTR (360 + 600) / 2 = 480 min
            1.9839,  # (31 + 30.5) / 31
            100.813,  # 2 × 100 / (61.5 / 31) = 6200 / 61.5
            88560.0,  # 61.5 × 1440
            360.0,  # b1 08:00–14:00 on 3 Oct (B2 is P4; B3 a drill)
            99.5935,  # 100 × (1 − 360 / 88560)
            {"mean": 4.0, "count": 3},  # October 4 and 5, B2 3: 12 / 3; September's 1 is not October's
        ],
        ("pC", "2026-10-01"): [
            0, [], None, None,  # no incidents: no MTTA / MTTR
            1.0, 0.0,  # one resource all month, no incident
            44640.0, 0.0, 100.0,
            {"mean": 4.0, "count": 1},  # the 5 was replaced by the 4
        ],
    }  # fmt: skip
    # the per-severity figures are still there (drills counted apart)
    rows = {(r["provider_id"], r["severity"]): (r["incidents"], r["drills"], r["mtta_s"]) for r in doc["rows"]}
    assert rows == {("pA", "P1"): (2, 1, 450.0), ("pA", "P2"): (2, 0, 1050.0), ("pA", "P3"): (1, 0, 10800.0),
                    ("pB", "P1"): (1, 0, 1800.0), ("pB", "P2"): (0, 1, None), ("pB", "P4"): (1, 0, 7200.0)}  # fmt: skip


async def test_daily_quality_and_a_providers_own_view(seeded) -> None:  # type: ignore[no-untyped-def]
    _, client = seeded
    doc = await _sla(client, "tok-b", **{"from": "2026-10-05", "to": "2026-10-06", "group_by": "day", "provider": "pA"})
    [q] = doc["quality"]
    assert (q["period"], q["from"], q["to"]) == ("2026-10-05", "2026-10-05", "2026-10-06")
    assert [q[f] for f in FIELDS] == [
        2, [],  # A1, A2
        900.0, 9000.0,  # (10 + 20) / 2 min; (120 + 180) / 2 min
        0.0968,  # a1, a2, a4 in service all day (a3 from 16 Oct): 3 resource-days / 31 days of October
        2066.6667,  # 2 × 100 / (3 / 31)
        4320.0, 420.0,  # 3 × 1440; a1 240 + a2 180
        90.2778,  # 100 × (1 − 420 / 4320)
        {"mean": 5.0, "count": 1},  # A1's rating counts on its opening day; the month's on 1 Oct
    ]  # fmt: skip
    own = await _sla(client, "tok-pB", **{"from": "2026-10-01", "to": "2026-11-01"})
    assert [(q["provider_id"], q["fault_rate"]) for q in own["quality"]] == [("pB", 100.813)]
    r = await client.get("/api/v1/sla", params={"provider": "pA"}, headers={"authorization": "Bearer tok-pB"})
    assert r.status_code == 403 and r.json()["error"] == "foreign_provider"


async def test_period_figures_for_the_fee_assessment(seeded) -> None:  # type: ignore[no-untyped-def]
    services, _ = seeded
    now = int(time.time() * 1000)
    october = (date(2026, 10, 1), date(2026, 10, 31))
    assert await period_figures(services.store, "pA", *october, now) == {
        "availability_pct": 98.2008,  # as above
        "within_target_pct": 80.0,  # restore clocks: A1, A2, A3, A6 in time, A5 past its 4 h: 4 / 5
        "breaches_p1": 1, "breaches_p2": 0, "breaches_p3": 1, "breaches_p4": 0,  # A5 restore; A3 response (3 h > 2 h)
        "satisfaction": 3.3333,
        "fault_rate": 176.1364,
    }  # fmt: skip
    assert await period_figures(services.store, "pB", *october, now) == {
        "availability_pct": 99.5935,
        "within_target_pct": 50.0,  # B1 restored in 6 h > 4 h, B2 in 10 h <= 72 h
        "breaches_p1": 2, "breaches_p2": 0, "breaches_p3": 0, "breaches_p4": 0,  # B1 response (30 min) and restore
        "satisfaction": 4.0,
        "fault_rate": 100.813,
    }  # fmt: skip
    assert await period_figures(services.store, "pC", *october, now) == {
        "availability_pct": 100.0, "within_target_pct": None,  # no incident decided
        "breaches_p1": 0, "breaches_p2": 0, "breaches_p3": 0, "breaches_p4": 0,
        "satisfaction": 4.0, "fault_rate": 0.0,
    }  # fmt: skip
    # the first half of October (1–15, both days inclusive)
    assert await period_figures(services.store, "pA", date(2026, 10, 1), date(2026, 10, 15), now) == {
        "availability_pct": 99.0625,  # down a1 240 + a2 180 + a4 120 = 540 of (15 + 15 + 0 + 10) × 1440 = 57600
        "within_target_pct": 100.0,  # A1, A2, A3, A6 restored in time
        "breaches_p1": 0, "breaches_p2": 0, "breaches_p3": 1, "breaches_p4": 0,  # A3
        "satisfaction": 3.3333,  # A1 5 (5 Oct), October 3 (counted on 1 Oct), A6 2 (10 Oct)
        "fault_rate": 310.0,  # 4 × 100 / (40 / 31)
    }  # fmt: skip
    # as of 31 Oct 00:00: time after it does not count yet
    as_of = at(31)
    figures = await period_figures(services.store, "pA", *october, as_of)
    assert (figures["availability_pct"], figures["fault_rate"], figures["within_target_pct"]) == (
        99.3137,  # in service (30 + 30 + 15 + 10) × 1440 = 122400; down 240 + 180 + 120 + a3 19:00–24:00 300 = 840
        182.3529,  # 5 × 100 / (85 / 31)
        80.0,  # A5's restore deadline (30 Oct 23:00) passed before as_of
    )  # fmt: skip
    with pytest.raises(ValueError):
        await period_figures(services.store, "pA", date(2026, 10, 2), date(2026, 10, 1), now)
