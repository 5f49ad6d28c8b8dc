"""Periods that reach beyond today (Asia/Shanghai) stop at today: the later days are neither billed nor listed
as not under supervision, today expects only the samples of its elapsed part, and the output says so."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta, timezone

from dashboard.api_billing import (
    assessment_doc,
    load_scheme,
    provider_report,
    run_assessment,
    today_cst,
)
from tests.integration.test_assessment import auth, env, post_ok, seed_resource, seed_rollups

__all__ = ["env"]
CST = timezone(timedelta(hours=8))
NOW = datetime(2025, 6, 15, 2, 0, tzinfo=timezone.utc)  # 2025-06-15 10:00 in Weihai: 36,000 s of today gone


async def test_year_to_date_is_counted_up_to_today(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    await post_ok(client, "/api/v1/prices", "finance", {"valid_from": "2025-01-01", "vcpu_day": "1.00",
                  "mem_gb_day": "0", "storage_gb_day": "0", "correction": True, "reason": "2025 年计费标准"})  # fmt: skip
    for rid, today_samples in (("t1", 600), ("t2", 300)):  # interval 60 s: by 10:00, 600 samples are due
        seed_resource(services, "pT", rid, [("delivered", "2025-06-01T02:00:00", (2, 1, 0))])  # 06-01 10:00 in Weihai
        seed_rollups(services, "pT", rid, date(2025, 6, 1), 14)  # 06-01..06-14, complete
        seed_rollups(services, "pT", rid, date(2025, 6, 15), 1, samples=today_samples)

    a = assessment_doc(await run_assessment(services.store, "pT", date(2025, 1, 1), date(2025, 12, 31), load_scheme(),
                                            now=NOW))  # fmt: skip
    assert (a["from"], a["to"], a["as_of"], a["period_to_effective"], a["period_truncated"]) == (
        "2025-01-01", "2025-12-31", "2025-06-15", "2025-06-15", True)  # fmt: skip
    assert "2025-06-15" in a["period_note"] and "not over" in a["period_note_en"]
    # day rate 2 × 1.00 = 2.00. t1: 06-01..06-15 = 15 days; today 600 of 600 due → supervised.
    # t2: 06-01..06-14 = 14 days; today 300 of 600 due = 50 % < 90 % → not under supervision (today only).
    # 06-16..12-31 have not happened: not billed, not excluded (they were 199 "unsupervised" days each).
    lines = [(x["resource_id"], x["status"], x["first_day"], x["last_day"], x["days"], x["amount"])
             for x in a["lines"] + a["exclusions"]]  # fmt: skip
    assert lines == [("t1", "billable", "2025-06-01", "2025-06-15", 15, "30.00"),
                     ("t2", "billable", "2025-06-01", "2025-06-14", 14, "28.00"),
                     ("t2", "unsupervised", "2025-06-15", "2025-06-15", 1, "2.00")]  # fmt: skip
    assert a["exclusions"][0]["completeness_pct"] == 50.0
    assert (a["totals"]["gross"], a["totals"]["excluded"], a["totals"]["billable"]) == ("60.00", "2.00", "58.00")
    # completeness: (2 × 14 × 1440 + 600 + 300) / (2 × (14 × 1440 + 600)) = 41,220 / 41,520 = 99.28 %
    assert a["telemetry_completeness_pct"] == 99.28

    # the provider's June report, asked on 06-15 10:00: the same 15 days, today pro rata
    m = await provider_report(services.store, "pT", "monthly", date(2025, 6, 1), date(2025, 6, 30), "2025 年 6 月", now=NOW)
    assert (m["as_of"], m["period_to_effective"], m["period_truncated"]) == ("2025-06-15", "2025-06-15", True)
    # t2: (14 × 1440 + 300) / ((15 × 86400 − (86400 − 36000)) / 60) = 20,460 / 20,760 = 98.55 %
    assert [(r["resource_id"], r["days_in_service"], r["completeness_pct"]) for r in m["resources"]] == [
        ("t1", 15, 100.0), ("t2", 15, 98.55)]  # fmt: skip
    assert m["summary"]["resource_days"] == 30
    # July has not begun: nothing is counted, and the report says so
    j = await provider_report(services.store, "pT", "monthly", date(2025, 7, 1), date(2025, 7, 31), "2025 年 7 月", now=NOW)
    assert (j["resources"], j["period_to_effective"], j["summary"]["resource_days"]) == ([], None, 0)
    assert "尚未开始" in j["period_note"]


async def test_api_periods_stop_at_the_real_today(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    today = today_cst()
    await post_ok(client, "/api/v1/prices", "finance", {"valid_from": (today - timedelta(days=10)).isoformat(),
                  "vcpu_day": "1.00", "mem_gb_day": "0", "storage_gb_day": "0", "correction": True,
                  "reason": "测试价格"})  # fmt: skip
    delivered = datetime.combine(today - timedelta(days=3), time(0, 30), tzinfo=CST).astimezone(timezone.utc)
    seed_resource(services, "pN", "n1", [("delivered", delivered.isoformat()[:19], (1, 1, 0))])
    seed_rollups(services, "pN", "n1", today - timedelta(days=3), 4)  # full days, today too: never short of due

    q = f"provider=pN&from={today - timedelta(days=3)}&to={today + timedelta(days=30)}"
    a = (await client.get(f"/api/v1/assessments?{q}", headers=auth("bureau"))).json()
    assert (a["as_of"], a["period_to_effective"], a["period_truncated"]) == (today.isoformat(), today.isoformat(), True)
    assert [(x["status"], x["days"]) for x in a["lines"]] == [("billable", 4)] and a["exclusions"] == []
    text = (await client.get(f"/api/v1/assessments?{q}&format=csv", headers=auth("bureau"))).text
    period = {row[1]: row[2] for row in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if row[0] == "period"}
    assert period == {"from": str(today - timedelta(days=3)), "to": str(today + timedelta(days=30)),
                      "as_of": str(today), "period_to_effective": str(today)}  # fmt: skip
    mtd = (await client.get("/api/v1/assessments?provider=pN&period=mtd", headers=auth("bureau"))).json()
    assert (mtd["to"], mtd["period_to_effective"], mtd["period_truncated"], mtd["period_note"]) == (
        today.isoformat(), today.isoformat(), False, "")  # fmt: skip
    page = await client.get(f"/api/v1/reports/provider?provider=pN&kind=annual&period={today.year}",
                            headers={**auth("bureau"), "accept": "text/html"})  # fmt: skip
    assert f"统计截至今天 {today}" in page.text or today == date(today.year, 12, 31)
