"""Fee assessment against real chDB (R5; §6, §12, §33–§35): a golden year for two providers computed by
hand, the price-list rules through the finance API, judgements and their withdrawal, JSON = CSV = XLSX."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openpyxl import load_workbook

from dashboard.api_billing import (
    assessment_doc,
    load_scheme,
    run_assessment,
    today_cst,
    write_reports,
)
from dashboard.app import build_app
from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings

ROLES = {"bureau": "", "finance": "", "pA": "pA", "pB": "pB", "pF": "pF", "unit": "u1", "auditor": ""}
LIFECYCLE_COLUMNS = ["event_id", "resource_id", "type", "ts", "provider_id", "unit_id", "district_id", "vcpu", "mem_gb",
                     "storage_gb"]  # fmt: skip
INVENTORY_COLUMNS = ["resource_id", "provider_id", "unit_id", "district_id", "name", "vcpu", "mem_gb", "storage_gb",
                     "state", "interval_s", "updated", "version"]  # fmt: skip
DEADLETTER_COLUMNS = ["ingest_ts", "reason", "detail", "provider_id", "batch_id", "payload", "src_topic",
                      "src_partition", "src_offset", "idx"]  # fmt: skip


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@asynccontextmanager
async def web(settings: Settings, tokens: dict[str, tuple[str, str]]) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """The services and an HTTP client on the web app; ``tokens``: who → (role, scope), sent as ``tok-<who>``."""
    await create_topics(settings)
    services = await open_services(settings)
    app = build_app(services)
    for who, (role, scope) in tokens.items():
        await app.state.tokens.add(f"tok-{who}", f"test {who}", role, scope)
    transport = httpx.ASGITransport(app=app)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield services, c
    finally:
        await services.aclose()


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    tokens = {who: ("provider" if who.startswith("p") else who, scope) for who, scope in ROLES.items()}
    async with web(settings, tokens) as got:
        yield got


def xlsx_summary(source: Path | bytes) -> dict[str, Any]:
    """key → value of the summary rows ([label, value, key]) of a report workbook's first sheet."""
    wb = load_workbook(io.BytesIO(source) if isinstance(source, bytes) else source)
    return {row[2]: row[1] for row in wb["概要 Summary"].iter_rows(values_only=True) if len(row) > 2 and row[2]}


def auth(who: str) -> dict[str, str]:
    return {"authorization": f"Bearer tok-{who}"}


def seed_resource(s: Services, provider: str, rid: str, events: list[tuple[str, str, tuple[int, int, int] | None]]) -> None:
    """Lifecycle events (type, UTC time, spec) and the inventory row of one resource (interval 60 s)."""
    c = s.store.client
    rows = [[f"{rid}-{i}", rid, t, utc(ts), provider, "u1", "d1", *(spec or (None, None, None))]
            for i, (t, ts, spec) in enumerate(events)]  # fmt: skip
    c.insert("lifecycle_events", rows, column_names=LIFECYCLE_COLUMNS)
    last_spec = [e[2] for e in events if e[2]][-1]
    c.insert("inventory", [[rid, provider, "u1", "d1", f"{rid} 业务系统", *last_spec, events[-1][0], 60,
                            utc(events[-1][1]), len(events)]], column_names=INVENTORY_COLUMNS)  # fmt: skip


def seed_rollups(s: Services, provider: str, rid: str, first: date, days: int, samples: int = 1440,
                 pct: float = 50.0) -> None:  # fmt: skip
    """rollup_1d rows straight into the table (aggregate states built with arrayReduce), one per day;
    every sample of the day at ``pct`` % cpu, memory and storage."""
    s.store.client.command(
        "INSERT INTO rollup_1d (day, provider_id, resource_id, samples, late, cpu_sum, cpu_max, cpu_q, mem_sum, mem_max, "
        "mem_q, storage_sum, storage_max, storage_q) "
        "SELECT {d:Date} + number, {p:String}, {r:String}, {n:UInt64}, 0, {v:Float32} * {n:UInt64}, {v:Float32}, "
        "arrayReduce('quantileTDigestState(0.95)', [{v:Float32}]), {v:Float32} * {n:UInt64}, {v:Float32}, "
        "arrayReduce('quantileTDigestState(0.95)', [{v:Float32}]), {v:Float32} * {n:UInt64}, {v:Float32}, "
        "arrayReduce('quantileTDigestState(0.95)', [{v:Float32}]) FROM numbers({k:UInt32})",
        parameters={"d": first, "p": provider, "r": rid, "n": samples, "k": days, "v": pct},
    )


def dead_letter(provider: str, rid: str, ts: str, offset: int, reason: str = "unregistered_resource") -> list[Any]:
    payload = orjson.dumps({"resource_id": rid, "ts": ts, "cpu_pct": 5.0, "mem_pct": 5.0, "storage_pct": 5.0}).decode()
    # ingested now: the deadletters table keeps 400 days (TTL), and this test runs long after 2025
    return [datetime.now(timezone.utc), reason, "not registered", provider, "b", payload, "telemetry.v1", 0, offset, 0]


def seed_year(s: Services) -> None:
    """Two providers' 2025 as described in test_golden_year_two_providers."""
    seed_resource(s, "pA", "a1", [("delivered", "2024-11-15T02:00:00", (2, 4, 100)),
                                  ("adjusted", "2025-03-31T16:30:00", (4, 8, 100))])  # 04-01 00:30 in Shanghai
    seed_resource(s, "pA", "a2", [("applied", "2025-02-20T02:00:00", (8, 16, 500)),
                                  ("delivered", "2025-03-09T18:00:00", None),  # 03-10 02:00 in Shanghai
                                  ("deregistration_requested", "2025-10-10T02:00:00", None),
                                  ("deregistered", "2025-10-19T17:30:00", None)])  # 10-20 01:30 in Shanghai
    seed_resource(s, "pA", "a3", [("delivered", "2024-06-01T02:00:00", (1, 2, 50))])
    seed_resource(s, "pB", "b1", [("delivered", "2024-01-01T02:00:00", (2, 4, 100))])
    seed_rollups(s, "pA", "a1", date(2025, 1, 1), 40)
    seed_rollups(s, "pA", "a1", date(2025, 2, 10), 10, samples=1000)  # < 90 % of 1440 = 1296: not supervised
    seed_rollups(s, "pA", "a1", date(2025, 2, 20), 315 - 1)
    seed_rollups(s, "pA", "a1", date(2025, 12, 31), 1, samples=720)  # one day in two unmerged parts: 720 + 720
    seed_rollups(s, "pA", "a1", date(2025, 12, 31), 1, samples=720)
    seed_rollups(s, "pA", "a2", date(2025, 1, 1), 365)  # telemetry outside its service days counts for nothing
    seed_rollups(s, "pA", "a3", date(2025, 1, 1), 365, pct=10.0)  # idle all year: utilization band low
    seed_rollups(s, "pB", "b1", date(2025, 1, 1), 365)
    s.store.client.insert("deadletters", [
        dead_letter("pA", "ghost-9", "2024-12-31T15:00:00+00:00", 1),  # 12-31 23:00 in Shanghai: outside
        dead_letter("pA", "ghost-9", "2024-12-31T16:30:00+00:00", 2),  # 01-01 00:30 in Shanghai: inside
        dead_letter("pA", "ghost-9", "2025-08-01T15:00:00+00:00", 3),  # 08-01 23:00
        dead_letter("pA", "ghost-9", "2025-08-01T17:00:00+00:00", 4),  # 08-02 01:00
        dead_letter("pA", "ghost-9", "2025-08-01T17:00:00+00:00", 4),  # the same dead letter replayed
        dead_letter("pA", "ghost-9", "2025-08-02T02:00:00+00:00", 5),  # 08-02 10:00
        dead_letter("pA", "a1", "2025-08-02T02:00:00+00:00", 6, reason="out_of_range"),  # not an exclusion
        dead_letter("pB", "ghost-b", "2025-03-01T02:00:00+00:00", 7),
    ], column_names=DEADLETTER_COLUMNS)  # fmt: skip


def line_tuples(doc: dict[str, Any], key: str) -> list[tuple]:
    return [(x["resource_id"], x["status"], x["version_id"], x["first_day"], x["last_day"], x["days"],
             (x["vcpu"], x["mem_gb"], x["storage_gb"]), x["day_rate"], x["amount"]) for x in doc[key]]  # fmt: skip


async def post_ok(client: httpx.AsyncClient, path: str, who: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(path, headers=auth(who), json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_golden_year_two_providers(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    seed_year(services)
    # Price list, entered by finance as corrections (2025 lies in the past; a correction needs a reason):
    #   V1 from 2025-01-01: 1.00 per vCPU-day, 0.50 per GB-memory-day, 0.0125 per GB-storage-day
    #   V2 from 2025-07-01: 1.20,              0.45,                   0.0125
    v1 = (await post_ok(client, "/api/v1/prices", "finance", {"valid_from": "2025-01-01", "vcpu_day": "1.00",
          "mem_gb_day": 0.5, "storage_gb_day": "0.0125", "correction": True, "reason": "录入 2025 年计费标准"}))  # fmt: skip
    v2 = (await post_ok(client, "/api/v1/prices", "finance", {"valid_from": "2025-07-01", "vcpu_day": "1.20",
          "mem_gb_day": "0.45", "storage_gb_day": "0.0125", "correction": True, "reason": "财政局 7 月调价"}))  # fmt: skip
    V1, V2 = v1["version_id"], v2["version_id"]
    # The bureau judges a3 unqualified for 2025-05-01..05-20; a second judgement is withdrawn again.
    await post_ok(client, "/api/v1/judgements", "bureau", {"provider_id": "pA", "resource_id": "a3",
                  "from": "2025-05-01", "to": "2025-05-20", "reason": "等保测评整改期间服务不合格"})  # fmt: skip
    j2 = await post_ok(client, "/api/v1/judgements", "bureau", {"provider_id": "pA", "resource_id": "",
                       "from": "2025-09-01", "to": "2025-09-30", "reason": "误判"})  # fmt: skip
    r = await client.request("DELETE", f"/api/v1/judgements/{j2['judgement_id']}", headers=auth("bureau"),
                             content=orjson.dumps({"reason": "复核后撤销"}))  # fmt: skip
    assert r.status_code == 200
    # pA's SLA results for 2025, entered by the bureau (pB has none).
    await post_ok(client, "/api/v1/sla-results", "bureau", {"provider_id": "pA", "from": "2025-01-01", "to": "2025-12-31",
                  "availability_pct": 99.7, "within_target_pct": 92, "breaches_p1": 1, "breaches_p2": 2,
                  "breaches_p3": 0, "breaches_p4": 0, "satisfaction": 4.5})  # fmt: skip

    r = await client.get("/api/v1/assessments?provider=pA&year=2025", headers=auth("bureau"))
    assert r.status_code == 200, r.text
    a = r.json()
    assert (a["from"], a["to"], a["supervision_threshold_pct"]) == ("2025-01-01", "2025-12-31", "90")
    # Day rates: vcpu × p_vcpu + mem × p_mem + storage × p_storage
    #   a1 2/4/100  V1: 2×1.00 + 4×0.50 + 100×0.0125 = 5.25
    #   a1 4/8/100  V1: 4 + 4 + 1.25 = 9.25           V2: 4×1.20 + 8×0.45 + 1.25 = 9.65
    #   a2 8/16/500 V1: 8 + 8 + 6.25 = 22.25          V2: 9.60 + 7.20 + 6.25 = 23.05
    #   a3 1/2/50   V1: 1 + 1 + 0.625 = 2.625         V2: 1.20 + 0.90 + 0.625 = 2.725
    assert line_tuples(a, "lines") == [
        # a1: delivered 2024-11-15; 02-10..02-19 not supervised; adjusted on 04-01 (Shanghai day)
        ("a1", "billable", V1, "2025-01-01", "2025-02-09", 40, (2, 4, 100), "5.2500", "210.00"),  # 40 × 5.25
        ("a1", "billable", V1, "2025-02-20", "2025-03-31", 40, (2, 4, 100), "5.2500", "210.00"),  # 9 + 31 days
        ("a1", "billable", V1, "2025-04-01", "2025-06-30", 91, (4, 8, 100), "9.2500", "841.75"),  # 91 × 9.25
        ("a1", "billable", V2, "2025-07-01", "2025-12-31", 184, (4, 8, 100), "9.6500", "1775.60"),  # 184 × 9.65
        # a2: delivered 03-10, deregistered 10-20 (Shanghai days; exclusive): spec from its application
        ("a2", "billable", V1, "2025-03-10", "2025-06-30", 113, (8, 16, 500), "22.2500", "2514.25"),  # 22+30+31+30
        ("a2", "billable", V2, "2025-07-01", "2025-10-19", 111, (8, 16, 500), "23.0500", "2558.55"),  # 31+31+30+19
        # a3: judged unqualified 05-01..05-20
        ("a3", "billable", V1, "2025-01-01", "2025-04-30", 120, (1, 2, 50), "2.6250", "315.00"),  # 120 × 2.625
        ("a3", "billable", V1, "2025-05-21", "2025-06-30", 41, (1, 2, 50), "2.6250", "107.63"),  # 107.625 half up
        ("a3", "billable", V2, "2025-07-01", "2025-12-31", 184, (1, 2, 50), "2.7250", "501.40"),  # 184 × 2.725
    ]
    assert line_tuples(a, "exclusions") == [
        ("a1", "unsupervised", V1, "2025-02-10", "2025-02-19", 10, (2, 4, 100), "5.2500", "52.50"),  # 10 × 5.25
        ("a3", "unqualified", V1, "2025-05-01", "2025-05-20", 20, (1, 2, 50), "2.6250", "52.50"),  # 20 × 2.625
    ]
    assert a["exclusions"][0]["completeness_pct"] == pytest.approx(69.44)  # 1000 / 1440
    assert a["exclusions"][1]["judgement_reason"] == "等保测评整改期间服务不合格"
    assert [(u["resource_id"], u["samples"], u["days_seen"], u["inventory_state"]) for u in a["unregistered"]] == [
        ("ghost-9", 4, 3, "")  # 01-01, 08-01, 08-02 (Shanghai days); the replayed dead letter counted once
    ]
    # Telemetry completeness over pA's in-service resource-days: a1 365 + a2 224 + a3 365 = 954 days × 1440
    # = 1,373,760 expected; 10 days × 440 missing → 1,369,360 / 1,373,760 = 99.68 %
    assert a["telemetry_completeness_pct"] == 99.68
    # Deduction (deduction.yaml): availability 99.7 < 99.9 → 1; within target 92 < 95 → 1;
    # breaches 1 × P1 1.0 + 2 × P2 0.5 = 2.0; satisfaction 4.5 ≥ 4.0 → 0; completeness 99.68 < 99.9 → 0.5
    # = 4.5 % (cap 10 %)
    q = a["quality"]
    assert (q["status"], q["pct"], q["missing"], a["provisional"]) == ("complete", "4.5", [], False)
    assert {c["figure"]: c["pct"] for c in q["components"]} == {
        "availability_pct": "1", "within_target_pct": "1", "satisfaction": "0", "completeness_pct": "0.5",
        "breaches": "2.0"}  # fmt: skip
    assert {c["figure"]: c["source"].split(" ")[0] for c in q["components"]}["completeness_pct"] == "computed"
    # billable = 210.00 + 210.00 + 841.75 + 1775.60 + 2514.25 + 2558.55 + 315.00 + 107.63 + 501.40 = 9034.18
    # excluded = 52.50 + 52.50 = 105.00; gross = 9139.18
    # deduction = 9034.18 × 4.5 % = 406.5381 → 406.54; net = 9034.18 − 406.54 = 8627.64
    expected_a = {"gross": "9139.18", "excluded": "105.00", "billable": "9034.18", "deduction_pct": "4.5",
                  "deduction": "406.54", "net": "8627.64"}  # fmt: skip
    assert a["totals"] == expected_a

    # pB: b1 all year, supervised every day. V1 181 days × (2 + 2 + 1.25 = 5.25) = 950.25;
    # V2 184 × (2.40 + 1.80 + 1.25 = 5.45) = 1002.80; billable 1953.05. No SLA results entered: the computed
    # figures count — completeness 100 % (rollups), availability 100 % and no breaches (pB had no incident
    # all year); within-target share and satisfaction have no data, are listed missing, and the
    # assessment is provisional.
    b = (await client.get("/api/v1/assessments?provider=pB&from=2025-01-01&to=2025-12-31", headers=auth("finance"))).json()
    assert line_tuples(b, "lines") == [
        ("b1", "billable", V1, "2025-01-01", "2025-06-30", 181, (2, 4, 100), "5.2500", "950.25"),
        ("b1", "billable", V2, "2025-07-01", "2025-12-31", 184, (2, 4, 100), "5.4500", "1002.80"),
    ]
    assert b["exclusions"] == [] and [u["resource_id"] for u in b["unregistered"]] == ["ghost-b"]
    assert b["provisional"] is True and b["quality"]["status"] == "partial"
    assert sorted(b["quality"]["missing"]) == ["satisfaction", "within_target_pct"]
    sources = {c["figure"]: c["source"] for c in b["quality"]["components"]}
    assert sources["availability_pct"].startswith("computed from incidents") and sources["breaches"].startswith("computed")
    # (the deduction is the sum of the components, among them 0 breaches × 0.5 % = 0.0 %)
    assert b["totals"] == {"gross": "1953.05", "excluded": "0.00", "billable": "1953.05", "deduction_pct": "0.0",
                           "deduction": "0.00", "net": "1953.05"}  # fmt: skip

    # The bureau may try other figures (said so in the output): availability 98.5 → 5; breaches P1 20 (P2 2 as
    # stored) → 21 % capped at 5; + within 1 + completeness 0.5 = 11.5 → capped at 10 %:
    # 9034.18 × 10 % = 903.418 → 903.42; net 8130.76.
    w = (await client.get("/api/v1/assessments?provider=pA&year=2025&availability_pct=98.5&breaches_p1=20",
                          headers=auth("bureau"))).json()  # fmt: skip
    assert (w["quality"]["uncapped_pct"], w["totals"]["deduction"], w["totals"]["net"]) == ("11.5", "903.42", "8130.76")
    assert {c["figure"]: c["source"] for c in w["quality"]["components"]}["availability_pct"].startswith("request by")
    # ... a provider may not: its own figures are ignored, and it sees only its own assessment
    own = await client.get("/api/v1/assessments?provider=pA&year=2025&availability_pct=0", headers=auth("pA"))
    assert own.status_code == 200 and own.json()["totals"] == expected_a
    assert (await client.get("/api/v1/assessments?year=2025", headers=auth("pA"))).json()["totals"] == expected_a
    for who, status in (("pB", 403), ("unit", 403), ("auditor", 403), ("finance", 200)):
        r = await client.get("/api/v1/assessments?provider=pA&year=2025", headers=auth(who))
        assert r.status_code == status, who
    assert (await client.get("/api/v1/assessments?provider=pA&year=2025")).status_code == 401

    # CSV (format=csv) and XLSX (Accept) carry the same lines and totals as the JSON
    r = await client.get("/api/v1/assessments?provider=pA&year=2025&format=csv", headers=auth("bureau"))
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert {x["resource_id"]: x["amount"] for x in rows if x["section"] == "total"} == expected_a
    assert [x["amount"] for x in rows if x["section"] == "line"] == [x["amount"] for x in a["lines"]]
    assert [x["resource_id"] for x in rows if x["section"] == "unregistered"] == ["ghost-9"]
    xlsx_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    r = await client.get("/api/v1/assessments?provider=pA&year=2025", headers={**auth("bureau"), "accept": xlsx_type})
    assert r.headers["content-type"] == xlsx_type
    wb = load_workbook(io.BytesIO(r.content))
    summary = {row[2]: row[1] for row in wb["汇总 Summary"].iter_rows(values_only=True) if len(row) > 2 and row[2]}
    assert {k: str(Decimal(str(summary[k])).quantize(Decimal(v))) for k, v in expected_a.items()} == expected_a
    amounts = [row[17] for row in wb["明细 Lines"].iter_rows(min_row=2, values_only=True)]
    assert sum(Decimal(str(x)).quantize(Decimal("0.01")) for x in amounts) == Decimal(expected_a["billable"])

    audit = (await client.get("/api/v1/audit?limit=100", headers=auth("auditor"))).json()["entries"]
    actions = sorted((e["action"], e["ok"]) for e in audit if e["action"] != "assessment_view")
    assert actions == [("judgement_create", 1), ("judgement_create", 1), ("judgement_withdraw", 1),
                       ("price_create", 1), ("price_create", 1), ("sla_results_put", 1)]  # fmt: skip


async def test_price_list_rules_succession_and_audit(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    today = today_cst()

    def day(n: int) -> str:
        return (today + timedelta(days=n)).isoformat()

    def price(frm: str, vcpu: Any = "1.00", to: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"valid_from": frm, "valid_to": to, "vcpu_day": vcpu, "mem_gb_day": "0.10", "storage_gb_day": "0",
                **extra}  # fmt: skip

    async def post(body: dict[str, Any], who: str = "finance") -> httpx.Response:
        return await client.post("/api/v1/prices", headers=auth(who), json=body)

    f1 = await post(price(day(10), "1.00"))  # open: runs until the next version starts
    assert f1.status_code == 201, f1.text
    f2 = await post(price(day(40), "2.00", to=day(50)))  # supersedes f1 from day 40 (succession)
    assert f2.status_code == 201, f2.text
    refused = [
        (price(day(10), "3.00"), "valid_from"),  # the same start as f1
        (price(day(45), "3.00"), "valid_from"),  # inside f2's explicit [day 40, day 50)
        (price(day(20), "3.00", to=day(60)), "valid_from"),  # would contain f2's start
        (price(day(70), "-0.01"), "vcpu_day"),  # negative
        (price(day(70), "0.00001"), "vcpu_day"),  # more than 4 decimals
        (price(day(70), to=day(70)), "valid_to"),  # empty range
        (price(day(-1)), "valid_from"),  # the past, not a correction
        (price(day(-1), correction=True), "reason"),  # a correction needs a reason
    ]
    for body, field in refused:
        r = await post(body)
        assert (r.status_code, r.json().get("field")) == (422, field), body
        assert r.json()["message"] and r.json()["message_en"]
    c = await post(price(day(-1), "0.50", correction=True, reason="补录昨日起的价格"))
    assert c.status_code == 201, c.text
    for who in ("bureau", "pF", "unit", "auditor"):
        assert (await post(price(day(80)), who)).status_code == 403
    listed = (await client.get("/api/v1/prices", headers=auth("pF"))).json()["versions"]
    assert [v["valid_from"] for v in listed] == [day(10), day(40), day(-1)]  # append-only, nothing rewritten

    # Which version is in force on which day (a resource of 1 vCPU / 1 GB / 0 GB: day rate = vcpu price + 0.10):
    # correction c from day -1 runs until f1 starts (day 10); f1 until f2 starts (day 40); f2 ends at day 50
    # (explicit); after it no version is in force.
    seed_resource(services, "pF", "f1", [("delivered", (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()[:19],
                                          (1, 1, 0))])  # fmt: skip
    seed_rollups(services, "pF", "f1", today, 60)
    # These days lie ahead: asked today, nothing is counted yet (and the answer says so) ...
    r = await client.get(f"/api/v1/assessments?provider=pF&from={day(5)}&to={day(54)}", headers=auth("pF"))
    ahead = r.json()
    assert (ahead["lines"], ahead["exclusions"], ahead["period_to_effective"]) == ([], [], None)
    assert ahead["as_of"] == today.isoformat() and ahead["period_note"] and ahead["period_note_en"]
    # ... so assess them as the bureau will once day 60 has come.
    later = datetime.now(timezone.utc) + timedelta(days=60)
    doc = assessment_doc(await run_assessment(services.store, "pF", today + timedelta(days=5),
                                              today + timedelta(days=54), load_scheme(), now=later))  # fmt: skip
    ids = {f1.json()["version_id"]: "f1", f2.json()["version_id"]: "f2", c.json()["version_id"]: "c", "": "-"}
    got = [(ids[x["version_id"]], x["status"], x["days"], x["amount"]) for x in doc["lines"] + doc["exclusions"]]
    assert got == [("c", "billable", 5, "3.00"),  # days 5..9: 5 × 0.60
                   ("f1", "billable", 30, "33.00"),  # days 10..39: 30 × 1.10
                   ("f2", "billable", 10, "21.00"),  # days 40..49: 10 × 2.10
                   ("-", "no_price", 5, "0.00")]  # days 50..54
    assert doc["totals"]["billable"] == "57.00" and doc["totals"]["excluded"] == "0.00"

    audit = (await client.get("/api/v1/audit?action=price_create&limit=100", headers=auth("bureau"))).json()["entries"]
    assert sorted(e["ok"] for e in audit) == [0] * len(refused) + [1, 1, 1]
    assert all(e["actor"] == "test finance" for e in audit)


async def test_period_choices_and_bad_requests(env) -> None:  # type: ignore[no-untyped-def]
    _, client = env
    today = today_cst()
    r = await client.get("/api/v1/assessments?provider=pA&period=mtd", headers=auth("bureau"))
    assert (r.json()["from"], r.json()["to"]) == (today.replace(day=1).isoformat(), today.isoformat())
    for query in ("provider=pA&from=2025-02-01&to=2025-01-01", "provider=pA&from=2025-13-01&to=2025-12-31",
                  "provider=pA&year=x", "provider=pA&period=week", "provider=pA&from=2020-01-01&to=2025-01-01",
                  "provider=pA&year=2025&format=pdf", "year=2025", "provider=pA&year=2025&satisfaction=9"):  # fmt: skip
        r = await client.get(f"/api/v1/assessments?{query}", headers=auth("bureau"))
        assert r.status_code == 400 and r.json()["message"] and r.json()["message_en"], query
    r = await client.post("/api/v1/judgements", headers=auth("bureau"), json={"provider_id": "pA", "from": "2025-02-01",
                          "to": "2025-01-01", "reason": "x"})  # fmt: skip
    assert r.status_code == 400
    assert (await client.post("/api/v1/judgements", headers=auth("finance"), json={})).status_code == 403
    r = await client.post("/api/v1/judgements", headers=auth("bureau"), json={"provider_id": "pA", "resource_id": "b1",
                          "from": "2025-01-01", "to": "2025-01-02", "reason": "另一家的资源"})  # fmt: skip
    assert r.status_code == 422  # a resource of another provider
    assert (await client.request("DELETE", "/api/v1/judgements/nope", headers=auth("bureau"))).status_code == 404


async def test_provider_reports_html_csv_xlsx(env, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    seed_year(services)
    c = services.store.client
    c.insert("incidents", [
        ["i1", "pA", "P1", 0, "resolved", ["a1"], "存储故障", utc("2025-03-01T02:00:00"), utc("2025-03-01T02:20:00"),
         utc("2025-03-01T07:00:00"), None, utc("2025-03-01T07:00:00"), 900_000, 14_400_000, "{}", 3],
        ["i2", "pA", "P2", 1, "resolved", ["a2"], "演练", utc("2025-04-01T02:00:00"), utc("2025-04-01T02:05:00"),
         utc("2025-04-01T03:00:00"), None, utc("2025-04-01T03:00:00"), 1_800_000, 28_800_000, "{}", 3],
        ["i3", "pB", "P1", 0, "open", ["b1"], "other provider", utc("2025-03-01T02:00:00"), None, None, None,
         utc("2025-03-01T02:00:00"), 900_000, 14_400_000, "{}", 1],
    ], column_names=["incident_id", "provider_id", "severity", "drill", "state", "resource_ids", "text", "opened",
                     "acknowledged", "resolved", "closed", "updated", "response_target_ms", "restore_target_ms",
                     "state_json", "version"])  # fmt: skip
    c.insert("sla_signals", [
        ["s1", "sla_breach", "i1", "response", "pA", "P1", utc("2025-03-01T02:15:00"), utc("2025-03-01T02:15:01")],
        ["s2", "sla_breach", "i1", "restore", "pA", "P1", utc("2025-03-01T06:00:00"), utc("2025-03-01T06:00:01")],
        ["s3", "sla_near_breach", "i1", "restore", "pA", "P1", utc("2025-03-01T05:12:00"), utc("2025-03-01T05:12:01")],
    ], column_names=["event_id", "kind", "subject", "which", "provider_id", "severity", "at", "fired_ts"])  # fmt: skip
    c.insert("recommendations", [
        ["r1", "a3", "pA", "cpu", "shrink", "approved", utc("2025-06-01T02:00:00"), 2],
        ["r2", "a3", "pA", "mem", "shrink", "rejected", utc("2025-06-01T02:00:00"), 2],
        ["r3", "a3", "pA", "mem", "shrink", "proposed", utc("2026-01-01T02:00:00"), 1],  # next year
    ], column_names=["rec_id", "resource_id", "provider_id", "metric", "direction", "status", "proposed_at", "version"])

    r = await client.get("/api/v1/reports/provider?provider=pA&kind=annual&period=2025&format=json", headers=auth("bureau"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["from"], doc["to"], doc["label"]) == ("2025-01-01", "2025-12-31", "2025 年度")
    # days in service as billed; a1 completeness (365 × 1440 − 10 × 440) / (365 × 1440) = 99.16 %
    assert [(x["resource_id"], x["days_in_service"], x["completeness_pct"], x["band"]) for x in doc["resources"]] == [
        ("a1", 365, 99.16, "normal"), ("a2", 224, 100.0, "normal"), ("a3", 365, 100.0, "low")]  # fmt: skip
    assert doc["incidents"][0] == {"severity": "P1", "opened": 1, "drills": 0, "resolved": 1, "response_min": 20.0,
                                   "restore_min": 300.0, "response_breaches": 1, "restore_breaches": 1}  # fmt: skip
    assert doc["incidents"][1]["drills"] == 1 and doc["incidents"][1]["opened"] == 0
    # (99.16 × 365 + 100 × 224 + 100 × 365) / 954 = 99.68
    assert doc["summary"] == {"resources": 3, "resource_days": 954, "completeness_pct": 99.68, "low": 1, "high": 0,
                              "incidents": 1, "drills": 1, "breaches": 2, "recommendations": 2,
                              "recommendations_open": 1, "rejected_inputs": 0}  # fmt: skip
    # no figures entered by the bureau: computed from the incidents and SLA signals above
    # availability: i1 (P1) kept a1 down 02:00–07:00 = 300 min of 954 resource-days × 1440 = 1,373,760 min
    #   → 1 − 300 / 1,373,760 = 99.9782 %; within target: i1 restored in 300 min > 240 → 0 of 1 = 0 %;
    #   breaches: s1, s2 (P1; s3 is a near-breach; i2 is a drill); no ratings
    sla = doc["sla_results"]
    assert (sla["availability_pct"], sla["within_target_pct"], sla["breaches_p1"], sla["breaches_p2"],
            sla["satisfaction"]) == (99.9782, 0.0, 2, 0, None)  # fmt: skip
    assert doc["sla_sources"]["availability_pct"] == "computed"

    page = await client.get("/api/v1/reports/provider?provider=pA&kind=annual&period=2025",
                            headers={**auth("bureau"), "accept": "text/html"})  # fmt: skip
    assert page.headers["content-type"].startswith("text/html")
    assert "pA 云服务运维年报（2025 年度）" in page.text and "报告期 2025-01-01 至 2025-12-31" in page.text
    assert "生成时间 " in page.text and "存储故障" not in page.text  # figures, not incident free text
    assert (await client.get("/api/v1/reports/report.css", headers=auth("pA"))).status_code == 200

    rows = list(csv.reader(io.StringIO((await client.get(
        "/api/v1/reports/provider?provider=pA&kind=annual&period=2025&format=csv", headers=auth("pA"))).text.lstrip("\ufeff"))))
    assert {k: v for sec, k, v, *_ in [r for r in rows if len(r) >= 3] if sec == "summary"} == {
        k: "" if v is None else str(v) for k, v in doc["summary"].items()}  # fmt: skip
    x = await client.get("/api/v1/reports/provider?provider=pA&kind=annual&period=2025&format=xlsx", headers=auth("finance"))
    assert xlsx_summary(x.content) == doc["summary"]

    q = (await client.get("/api/v1/reports/provider?provider=pA&kind=quarterly&period=2025-Q1&format=json",
                          headers=auth("pA"))).json()  # fmt: skip
    assert (q["from"], q["to"], q["summary"]["incidents"], q["summary"]["recommendations"]) == ("2025-01-01", "2025-03-31", 1, 0)
    m = (await client.get("/api/v1/reports/provider?provider=pA&kind=monthly&period=2025-02&format=json",
                          headers=auth("bureau"))).json()  # fmt: skip
    assert (m["to"], m["resources"][0]["days_in_service"], m["resources"][0]["completeness_pct"]) == ("2025-02-28", 28, 89.09)
    for query, who, status in (("provider=pB&kind=annual&period=2025", "pA", 403), ("provider=pA&kind=weekly&period=2025", "bureau", 400),
                               ("provider=pA&kind=monthly&period=2025-13", "bureau", 400),
                               ("provider=pA&kind=annual&period=2025", "auditor", 403)):  # fmt: skip
        assert (await client.get(f"/api/v1/reports/provider?{query}", headers=auth(who))).status_code == status, query

    # the files `opscenter report annual 2025` writes: one set per provider, same figures, a progress bar
    progress = io.StringIO()
    assert await write_reports(settings, "annual", "2025", None, tmp_path, stream=progress) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"report-{p}-annual-2025-01-01.{ext}" for p in ("pA", "pB")
                                                          for ext in ("csv", "html", "xlsx")]  # fmt: skip
    assert progress.getvalue().endswith("] 2/2" + " " * 21 + "\n")
    assert xlsx_summary(tmp_path / "report-pA-annual-2025-01-01.xlsx") == doc["summary"]
    assert "<style>" in (tmp_path / "report-pA-annual-2025-01-01.html").read_text(encoding="utf-8")
