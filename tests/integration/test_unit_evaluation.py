"""The annual evaluation of a unit (§32) against real chDB: a seeded year computed by hand, the four formats,
the scope of every role, and the files `opscenter report unit 2025` writes."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import orjson
import pytest

from dashboard.api_billing import write_reports
from opscenter.services import Services
from opscenter.settings import Settings
from opscenter.wire import TOPIC_LIFECYCLE
from streams.ingest import Message
from tests.integration.test_assessment import seed_rollups, utc, web, xlsx_summary

TOKENS = {"bureau": ("bureau", ""), "auditor": ("auditor", ""), "finance": ("finance", ""), "uE": ("unit", "uE"),
          "dE": ("district", "dE"), "dO": ("district", "dO"), "pE": ("provider", "pE")}  # fmt: skip
E = {"vcpu": 4, "mem_gb": 8, "storage_gb": 100}


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    async with web(settings, TOKENS) as got:
        yield got


def auth(who: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer tok-{who}", **extra}


def life(eid: str, rid: str, type_: str, ts: str, unit: str = "uE", spec: dict | None = None) -> bytes:
    return orjson.dumps({"event_id": eid, "resource_id": rid, "type": type_, "ts": ts, "provider_id": "pE",
                         "unit_id": unit, "district_id": "dE" if unit == "uE" else "dO", "spec": spec})  # fmt: skip


async def seed_year(s: Services) -> None:
    """Unit uE's 2025 (and a neighbour, uO), through the real registry stage; rollups, incidents, recommendations."""
    events = [
        life("e1", "e1", "delivered", "2024-12-01T10:00:00+08:00", spec=E),  # all year in service
        life("e2", "e2", "delivered", "2025-03-01T10:00:00+08:00", spec={"vcpu": 2, "mem_gb": 4, "storage_gb": 50}),
        life("e3a", "e3", "delivered", "2024-06-01T10:00:00+08:00", spec={"vcpu": 8, "mem_gb": 16, "storage_gb": 500}),
        life("e3b", "e3", "deregistration_requested", "2025-10-10T10:00:00+08:00"),
        life("e3c", "e3", "deregistered", "2025-10-20T01:30:00+08:00"),  # billed and counted up to 10-19
        life("e4", "e4", "applied", "2025-11-01T10:00:00+08:00", spec={"vcpu": 1, "mem_gb": 1, "storage_gb": 10}),
        life("e5a", "e5", "delivered", "2023-01-01T10:00:00+08:00", spec=E),  # gone before 2025: not listed
        life("e5b", "e5", "deregistration_requested", "2024-04-01T10:00:00+08:00"),
        life("e5c", "e5", "deregistered", "2024-05-01T10:00:00+08:00"),
        life("o1", "o1", "delivered", "2025-01-01T10:00:00+08:00", unit="uO", spec=E),  # another unit
    ]
    await s.registry_stage.process([Message(0, i, m, TOPIC_LIFECYCLE) for i, m in enumerate(events)])
    seed_rollups(s, "pE", "e1", date(2025, 1, 1), 200, pct=10.0)  # 200 low days ...
    seed_rollups(s, "pE", "e1", date(2025, 7, 20), 165, pct=50.0)  # ... then 165 normal ones (07-20..12-31)
    seed_rollups(s, "pE", "e2", date(2025, 2, 1), 334, pct=10.0)  # from 02-01: February is before its delivery
    seed_rollups(s, "pE", "e3", date(2025, 1, 1), 365, pct=90.0)  # after its deregistration: not counted
    seed_rollups(s, "pE", "o1", date(2025, 1, 1), 365, pct=95.0)
    c = s.store.client
    c.insert("orgs", [["unit", "uE", "市医保局", "Medical Insurance Bureau", "dE", 1]],
             column_names=["kind", "org_id", "name_zh", "name_en", "parent", "version"])  # fmt: skip
    inc = [  # id, severity, drill, state, resources, opened, resolved
        ("i1", "P1", 0, "resolved", ["e1"], "2025-03-01T02:00:00", "2025-03-01T05:00:00"),
        ("i2", "P2", 0, "acknowledged", ["e3", "o1"], "2025-09-20T02:00:00", None),  # still open
        ("i3", "P1", 1, "resolved", ["e2"], "2025-05-01T02:00:00", "2025-05-01T03:00:00"),  # a drill
        ("i4", "P1", 0, "open", ["o1"], "2025-04-01T02:00:00", None),  # the other unit's
        ("i5", "P2", 0, "open", ["e1"], "2024-12-30T02:00:00", None),  # opened in 2024, still open
        ("i6", "P3", 0, "open", ["e1"], "2026-01-05T02:00:00", None),  # after the year
    ]
    c.insert("incidents", [[i, "pE", sev, drill, state, res, "x", utc(op), None, utc(rs) if rs else None, None,
                            utc(op), 900_000, 14_400_000, "{}", 2] for i, sev, drill, state, res, op, rs in inc],
             column_names=["incident_id", "provider_id", "severity", "drill", "state", "resource_ids", "text", "opened",
                           "acknowledged", "resolved", "closed", "updated", "response_target_ms", "restore_target_ms",
                           "state_json", "version"])  # fmt: skip
    sig = [("s1", "sla_breach", "i1", "response", "P1", "2025-03-01T02:15:00"),
           ("s2", "sla_breach", "i2", "restore", "P2", "2025-09-20T10:00:00"),
           ("s3", "sla_near_breach", "i1", "restore", "P1", "2025-03-01T05:00:00"),  # not a breach
           ("s4", "sla_breach", "i3", "restore", "P1", "2025-05-01T06:00:00"),  # a drill's
           ("s5", "sla_breach", "i4", "response", "P1", "2025-04-01T02:15:00")]  # the other unit's
    c.insert("sla_signals", [[e, k, sub, w, "pE", sev, utc(at), utc(at)] for e, k, sub, w, sev, at in sig],
             column_names=["event_id", "kind", "subject", "which", "provider_id", "severity", "at", "fired_ts"])
    recs = [("r1", "e2", "cpu", "shrink", "proposed", "2025-08-01T02:00:00", 2, 1),
            ("r2", "e2", "memory", "shrink", "approved", "2025-08-01T02:00:00", 4, 2),
            ("r3", "e1", "cpu", "shrink", "rejected", "2025-05-01T02:00:00", 4, 2),
            ("r4", "e1", "storage", "expand", "applied", "2025-06-01T02:00:00", 100, 150),
            ("r5", "o1", "cpu", "shrink", "proposed", "2025-08-01T02:00:00", 4, 2),  # the other unit's
            ("r6", "e2", "storage", "shrink", "proposed", "2026-02-01T02:00:00", 50, 20)]  # after the year
    c.insert("recommendations", [[r, res, "pE", "uE", "dE", m, d, st, cur, tgt, "vcpu", 9.5, utc(at), 1]
                                 for r, res, m, d, st, at, cur, tgt in recs],
             column_names=["rec_id", "resource_id", "provider_id", "unit_id", "district_id", "metric", "direction",
                           "status", "current_size", "target_size", "size_unit", "p95_pct", "proposed_at", "version"])


# By hand, for uE and 2025 (every rollup day holds 1440 samples at one value for cpu, memory and storage):
#   e1 4/8/100, in service 365 days: 200 days at 10 % (low) + 165 at 50 % (normal); mean (2000 + 8250) / 365
#      = 28.08, p95 50 (the 0.95 quantile lies deep in the 50 % days); band normal
#   e2 2/4/50, delivered 03-01: 306 days (31+30+31+30+31+31+30+31+30+31) at 10 %: low, a downsizing candidate
#   e3 8/16/500, deregistered 10-20: 292 days (31+28+31+30+31+30+31+31+30+19) at 90 %: high; not in service at end
#   e4 applied on 11-01, never delivered: 0 days, no utilization
# Capacity-weighted (capacity × measured days): cpu weights 4×365 = 1460, 2×306 = 612, 8×292 = 2336 (Σ 4408):
#   mean (1460 × 28.08 + 612 × 10 + 2336 × 90) / 4408 = 257,356.8 / 4408 = 58.38
#   p95  (1460 × 50 + 612 × 10 + 2336 × 90) / 4408 = 289,360 / 4408 = 65.64
#   memory: every weight doubles → the same; storage weights 36,500, 15,300, 146,000 (Σ 197,800):
#   mean (36,500 × 28.08 + 15,300 × 10 + 146,000 × 90) / 197,800 = 72.39; p95 15,118,000 / 197,800 = 76.43
EXPECTED_SUMMARY = {
    "resources": 4, "in_service_at_end": 2, "delivered_in_period": 1, "deregistered_in_period": 1,
    "vcpu": 6, "mem_gb": 12, "storage_gb": 150, "resource_days": 963,  # 365 + 306 + 292 + 0
    "cpu_mean_pct": 58.38, "cpu_p95_pct": 65.64, "memory_mean_pct": 58.38, "memory_p95_pct": 65.64,
    "storage_mean_pct": 72.39, "storage_p95_pct": 76.43,
    "days_low": 506, "days_normal": 165, "days_high": 292, "downsizing_candidates": 1,  # 200 + 306 low days
    "incidents": 2, "drills": 1, "breaches": 2,  # i1 and i2; i3 a drill; breaches s1 and s2
    "open_p1": 0, "open_p2": 2, "recommendations_open": 2,  # i2 and i5 (opened in 2024) still open; r1 and r2
}  # fmt: skip


async def test_unit_annual_evaluation_by_hand(env, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    await seed_year(services)
    r = await client.get("/api/v1/reports/unit?unit=uE&year=2025&format=json", headers=auth("bureau"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["title"], doc["from"], doc["to"], doc["period_to_effective"]) == (
        "市医保局 政务云使用情况年度评价（2025 年度）", "2025-01-01", "2025-12-31", "2025-12-31")  # fmt: skip
    assert doc["summary"] == EXPECTED_SUMMARY
    got = {x["resource_id"]: (x["state"], x["days_in_service"], x["days_measured"], x["cpu_mean"], x["cpu_p95"],
                              x["days_low"], x["days_normal"], x["days_high"], x["band"]) for x in doc["resources"]}
    assert got == {
        "e1": ("delivered", 365, 365, 28.08, 50.0, 200, 165, 0, "normal"),
        "e2": ("delivered", 306, 306, 10.0, 10.0, 306, 0, 0, "low"),
        "e3": ("deregistered", 292, 292, 90.0, 90.0, 0, 0, 292, "high"),
        "e4": ("applied", 0, 0, None, None, 0, 0, 0, ""),
    }  # fmt: skip
    assert [(s["state"], s["resources"]) for s in doc["states"]] == [("applied", 1), ("delivered", 2), ("deregistered", 1)]
    assert [x["resource_id"] for x in doc["downsizing"]] == ["e2"]
    assert {i["severity"]: (i["opened"], i["drills"], i["resolved"], i["response_breaches"], i["restore_breaches"],
                            i["open_now"]) for i in doc["incidents"]} == {
        "P1": (1, 1, 1, 1, 0, 0), "P2": (1, 0, 0, 0, 1, 2), "P3": (0, 0, 0, 0, 0, 0), "P4": (0, 0, 0, 0, 0, 0)}  # fmt: skip
    assert [(x["rec_id"], x["status"]) for x in doc["recommendations"]] == [("r1", "proposed"), ("r2", "approved")]

    page = await client.get("/api/v1/reports/unit?unit=uE&year=2025", headers=auth("auditor", accept="text/html"))
    assert page.headers["content-type"].startswith("text/html")
    assert "市医保局 政务云使用情况年度评价（2025 年度）" in page.text and "报告期 2025-01-01 至 2025-12-31" in page.text
    assert "持续偏低的资源（建议缩容）" in page.text and "生成时间 " in page.text
    rows = list(csv.reader(io.StringIO((await client.get("/api/v1/reports/unit?year=2025&format=csv",
                                                         headers=auth("uE"))).text.lstrip("\ufeff"))))  # fmt: skip
    assert {k: v for sec, k, v, *_ in [x for x in rows if len(x) >= 3] if sec == "summary"} == {
        k: str(v) for k, v in EXPECTED_SUMMARY.items()}  # fmt: skip
    x = await client.get("/api/v1/reports/unit?unit=uE&year=2025", headers=auth("dE", accept=XLSX))
    assert xlsx_summary(x.content) == EXPECTED_SUMMARY

    # `opscenter report unit 2025`: every unit of the inventory, the same figures, a progress bar
    progress = io.StringIO()
    assert await write_reports(settings, "unit", "2025", None, tmp_path, stream=progress) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"report-unit-{u}-2025.{ext}" for u in ("uE", "uO")
                                                          for ext in ("csv", "html", "xlsx")]  # fmt: skip
    assert progress.getvalue().endswith("] 2/2" + " " * 21 + "\n")
    assert xlsx_summary(tmp_path / "report-unit-uE-2025.xlsx") == EXPECTED_SUMMARY
    assert "<style>" in (tmp_path / "report-unit-uE-2025.html").read_text(encoding="utf-8")


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def test_unit_evaluation_scope_and_bad_requests(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    await seed_year(services)
    cases = [
        ("unit=uE&year=2025", "bureau", 200), ("unit=uO&year=2025", "auditor", 200),
        ("year=2025", "uE", 200), ("unit=uE&year=2025", "uE", 200), ("unit=uO&year=2025", "uE", 403),
        ("unit=uE&year=2025", "dE", 200), ("unit=uO&year=2025", "dE", 403), ("unit=uO&year=2025", "dO", 200),
        ("unit=nobody&year=2025", "dE", 403), ("year=2025", "dE", 400),
        ("unit=uE&year=2025", "pE", 403), ("unit=uE&year=2025", "finance", 403),
        ("unit=uE&year=20x5", "bureau", 400), ("unit=uE&year=2150", "bureau", 400), ("unit=uE", "bureau", 400),
        ("unit=uE&year=2025&format=pdf", "bureau", 400), ("year=2025", "bureau", 400),
    ]  # fmt: skip
    for query, who, status in cases:
        r = await client.get(f"/api/v1/reports/unit?{query}", headers=auth(who))
        assert r.status_code == status, (query, who, r.text)
        if status >= 400:
            assert r.json()["message"] and r.json()["message_en"], (query, who)
    other = (await client.get("/api/v1/reports/unit?unit=uO&year=2025", headers=auth("dO"))).json()
    assert [x["resource_id"] for x in other["resources"]] == ["o1"]
    audit = (await client.get("/api/v1/audit?action=report_view&limit=100", headers=auth("auditor"))).json()["entries"]
    assert len(audit) == sum(status == 200 for *_, status in cases) + 1
