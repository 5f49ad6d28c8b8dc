"""The fee assessment (§12, §34, §35): ``/api/v1/assessments`` as JSON, CSV or XLSX.

A period that reaches beyond today (Asia/Shanghai) is counted up to today only: later days are
neither billed nor listed as not under supervision, and the output says so (``as_of``,
``period_to_effective``). Queries are ``sql/reports/assessment_*.sql``; the money is computed by
:mod:`opscenter.fees`. docs/billing.md has the rules.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import sql
from dashboard.auth import require
from dashboard.billing_common import (
    audit,
    day_params,
    download,
    jsonable,
    period_note,
    provider_and_format,
    scheme,
    store_of,  # fmt: skip
    today_cst,
)
from dashboard.billing_sla import (
    SLA_FIGURES,
    bad_figures,
    computed_figures,
    figures_of,
    sla_figures,
    stored_sla_row,
)
from dashboard.http import bad
from opscenter import fees
from opscenter.store import AsyncStore

MAX_SPAN_DAYS = 1100
FIGURE_NAMES = {
    "availability_pct": ("可用率 %", "availability %"), "within_target_pct": ("按时处置率 %", "within target %"),
    "breaches": ("SLA 超时次数", "SLA breaches"), "satisfaction": ("满意度", "satisfaction"),
    "completeness_pct": ("监测数据完整率 %", "telemetry completeness %"),
}  # fmt: skip
CSV_COLUMNS = ("section", "resource_id", "name", "unit_id", "status", "reason", "version_id", "first_day", "last_day",
               "days", "vcpu", "mem_gb", "storage_gb", "vcpu_day", "mem_gb_day", "storage_gb_day", "day_rate",
               "amount", "completeness_pct", "resource_class")  # fmt: skip
TOTAL_LABELS = (("gross", "应计金额", "gross"), ("excluded", "不纳入结算", "excluded"),
                ("billable", "纳入结算", "billable"), ("deduction_pct", "质量扣减比例 %", "deduction %"),
                ("deduction", "质量扣减", "deduction"), ("net", "核定金额", "net"))  # fmt: skip


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused for one burst of allocation: an annual assessment builds
    tens of thousands of line objects (none in a reference cycle), and the collector would walk them
    again and again while they are built, about doubling the time. Only around synchronous code."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson (compact UTF-8 like Starlette's, about ten times faster on a large assessment)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def period_of(q: Any, today: date) -> tuple[date, date]:
    """[from, to] from ``year=YYYY``, ``period=mtd`` (month to date) or ``from`` and ``to`` (inclusive)."""
    if q.get("year"):
        try:
            y = int(q["year"])
            return date(y, 1, 1), date(y, 12, 31)
        except ValueError:
            raise fees.PriceError("year", "year 须为年份", "year must be a year such as 2025") from None
    if q.get("period") == "mtd":
        return today.replace(day=1), today
    if q.get("period"):
        raise fees.PriceError("period", "period 仅支持 mtd", "period must be mtd (or give year, or from and to)")
    first, last = fees.parse_day(q.get("from"), "from"), fees.parse_day(q.get("to"), "to")
    if last < first:
        raise fees.PriceError("to", "结束日期早于开始日期", "to is before from")
    if (last - first).days >= MAX_SPAN_DAYS:
        raise fees.PriceError("to", f"区间最长 {MAX_SPAN_DAYS} 天", f"at most {MAX_SPAN_DAYS} days")
    return first, last


async def run_assessment(store: AsyncStore, provider: str, first: date, last: date, sch: fees.DeductionScheme,
                         override: dict[str, Any] | None = None, override_source: str = "request",
                         now: datetime | None = None) -> fees.Assessment:  # fmt: skip
    """Query the runs and the unregistered telemetry up to today, then assemble the assessment (fees.assess)."""
    now = now or datetime.now(timezone.utc)
    days = day_params(first, last, now)
    params = {"provider": provider, **days, "threshold": float(sch.supervision_threshold_pct) / 100.0}
    today = today_cst(now)
    # independent reads, in flight together: one converts its rows while the next runs in ClickHouse
    runs, price_rows, unregistered, row, computed = await asyncio.gather(
        store.query_dicts(sql.report("assessment_lines"), params),
        store.query(sql.report("assessment_prices")),
        store.query_dicts(sql.report("assessment_unregistered"), {"provider": provider, "from": first, "to": days["to"]}),
        stored_sla_row(store, provider, first, last),
        computed_figures(store, provider, first, last, now),
    )
    prices = {r[0]: (r[1], r[2], r[3]) for r in price_rows}
    figs = sla_figures(row, override or {}, override_source, fees.completeness_pct(runs), computed)
    with gc_paused():
        return fees.assess(provider, first, last, runs, unregistered, sch, figs, now, as_of=today, prices=prices)


def _line_doc(x: fees.Line, iso: dict[date, str]) -> dict[str, Any]:
    """One line item as JSON values: what ``jsonable`` makes of it (Decimals as strings, days as ISO
    dates, fields in order), written out because an annual assessment has tens of thousands of lines
    (``iso``: the days already formatted)."""
    (rid, name, unit_id, status, version, first, last, days, vcpu, mem_gb, storage_gb, vcpu_day, mem_gb_day,
     storage_gb_day, rate, amount, completeness, judgement_id, judgement_reason, resource_class) = x  # fmt: skip
    first_iso = iso.get(first) or iso.setdefault(first, first.isoformat())
    last_iso = iso.get(last) or iso.setdefault(last, last.isoformat())
    doc = {"resource_id": rid, "name": name, "unit_id": unit_id, "status": status, "version_id": version,
           "first_day": first_iso, "last_day": last_iso, "days": days, "vcpu": vcpu, "mem_gb": mem_gb,
           "storage_gb": storage_gb, "vcpu_day": str(vcpu_day), "mem_gb_day": str(mem_gb_day),
           "storage_gb_day": str(storage_gb_day), "day_rate": str(rate), "amount": str(amount),
           "completeness_pct": completeness, "judgement_id": judgement_id, "judgement_reason": judgement_reason,
           "resource_class": resource_class}  # fmt: skip
    if status != "billable":
        doc["reason_zh"], doc["reason_en"] = fees.EXCLUSION_REASONS[status]
    return doc


def assessment_doc(a: fees.Assessment) -> dict[str, Any]:
    """The JSON of an assessment: every amount a decimal string in yuan."""
    d = a.deduction
    missing_zh = "、".join(FIGURE_NAMES[m][0] for m in d.missing)
    quality = {
        "status": "partial" if d.missing else "complete",
        "scheme": Path(scheme().source).name,
        "components": [jsonable(asdict(c)) for c in d.components],
        "missing": list(d.missing),
        "uncapped_pct": str(d.uncapped_pct), "cap_pct": str(d.cap_pct), "pct": str(d.pct),
        "note": (f"以下 SLA 指标尚未提供，未计入扣减，结果为暂定：{missing_zh}" if d.missing else "SLA 指标齐全"),
        "note_en": (f"SLA figures not available, not deducted for; provisional: {', '.join(d.missing)}"
                    if d.missing else "all SLA figures present"),
    }  # fmt: skip
    t = a.totals
    as_of = a.as_of or a.generated_at.date()
    iso: dict[date, str] = {}
    return {
        "provider_id": a.provider_id, "from": a.period_from.isoformat(), "to": a.period_to.isoformat(),
        **period_note(a.period_from, a.period_to, as_of, a.period_to_effective),
        "generated_at": a.generated_at.isoformat(), "currency": "CNY",
        "rounding": "each line: days × day rate, rounded once to 0.01 yuan (half up); deduction: billable × pct, "
                    "rounded once the same way",
        "supervision_threshold_pct": str(a.supervision_threshold_pct),
        "telemetry_completeness_pct": a.telemetry_completeness_pct,
        "provisional": a.provisional,
        "lines": [_line_doc(x, iso) for x in a.lines],
        "exclusions": [_line_doc(x, iso) for x in a.exclusions],
        "unregistered": [{**jsonable(u), "reason_zh": "未在云管平台登记的资源（§34）",
                          "reason_en": "resource not registered with the platform (§34)"} for u in a.unregistered],
        "quality": quality,
        "totals": {"gross": str(t.gross), "excluded": str(t.excluded), "billable": str(t.billable),
                   "deduction_pct": str(t.deduction_pct), "deduction": str(t.deduction), "net": str(t.net)},
    }  # fmt: skip


def _line_cells(section: str, x: dict[str, Any]) -> list[Any]:
    reason = x.get("judgement_reason") or x.get("reason_zh", "")
    return [section, x["resource_id"], x["name"], x["unit_id"], x["status"], reason, x["version_id"], x["first_day"],
            x["last_day"], x["days"], x["vcpu"], x["mem_gb"], x["storage_gb"], x["vcpu_day"], x["mem_gb_day"],
            x["storage_gb_day"], x["day_rate"], x["amount"], x["completeness_pct"], x["resource_class"]]  # fmt: skip


def assessment_csv(doc: dict[str, Any]) -> str:
    """One CSV: lines, exclusions, unregistered resources, the period counted, then the totals (column section)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for x in doc["lines"]:
        w.writerow(_line_cells("line", x))
    for x in doc["exclusions"]:
        w.writerow(_line_cells("exclusion", x))
    width = len(CSV_COLUMNS)
    for u in doc["unregistered"]:
        head = ["unregistered", u["resource_id"], "", "", u["inventory_state"], u["reason_zh"], "", u["first_seen"],
                u["last_seen"], u["days_seen"]]  # fmt: skip
        w.writerow(head + [""] * (width - len(head)))
    for key in ("from", "to", "as_of", "period_to_effective"):  # what was counted (the name column holds it)
        w.writerow(["period", key, doc[key] or ""] + [""] * (width - 3))
    amount = CSV_COLUMNS.index("amount")
    for key, zh, en in TOTAL_LABELS:
        cells = ["total", key, f"{zh} {en}"] + [""] * (width - 3)
        cells[amount] = doc["totals"][key]
        w.writerow(cells)
    return "\ufeff" + buf.getvalue()


def assessment_xlsx(doc: dict[str, Any]) -> bytes:
    """An XLSX workbook: 汇总 (summary with the totals), 明细, 剔除, 未登记, 质量扣减."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "汇总 Summary"
    ws.append(["云服务费核算 Fee assessment"])
    for label, value in (("云服务商 Provider", doc["provider_id"]), ("开始 From", doc["from"]), ("结束 To", doc["to"]),
                         ("统计截至 Counted to", doc["period_to_effective"] or "-"), ("说明 Note", doc["period_note"]),
                         ("生成时间 Generated", doc["generated_at"]), ("暂定 Provisional", "是 yes" if doc["provisional"] else "否 no"),
                         ("质量扣减说明 Quality", doc["quality"]["note"])):  # fmt: skip
        ws.append([label, value])
    ws.append([])
    ws.append(["项目 Item", "金额（元）Yuan", "key"])
    for key, zh, en in TOTAL_LABELS:
        ws.append([f"{zh} {en}", Decimal(doc["totals"][key]), key])
    money = {"vcpu_day", "mem_gb_day", "storage_gb_day", "day_rate", "amount"}
    for title, section, rows in (("明细 Lines", "line", doc["lines"]), ("剔除 Exclusions", "exclusion", doc["exclusions"])):
        sheet = wb.create_sheet(title)
        sheet.append(list(CSV_COLUMNS))
        for x in rows:
            sheet.append([Decimal(v) if c in money else v for c, v in zip(CSV_COLUMNS, _line_cells(section, x))])
    sheet = wb.create_sheet("未登记 Unregistered")
    sheet.append(["resource_id", "samples", "days_seen", "first_seen", "last_seen", "inventory_state"])
    for u in doc["unregistered"]:
        sheet.append([u["resource_id"], u["samples"], u["days_seen"], u["first_seen"], u["last_seen"], u["inventory_state"]])
    sheet = wb.create_sheet("质量扣减 Quality")
    sheet.append(["figure", "value", "pct", "rule", "source"])
    for c in doc["quality"]["components"]:
        sheet.append([c["figure"], orjson.dumps(c["value"]).decode(), Decimal(c["pct"]), c["rule"], c["source"]])
    for m in doc["quality"]["missing"]:
        sheet.append([m, "missing 缺失", 0, "", ""])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


@require("bureau", "finance", "provider")
async def get_assessment(request: Request) -> Response:
    """A provider's fee assessment for a year, month to date or any range; JSON, CSV or XLSX."""
    q = request.query_params
    got = provider_and_format(request, ("json", "csv", "xlsx"))
    if isinstance(got, JSONResponse):
        return got
    provider, fmt = got
    try:
        first, last = period_of(q, today_cst())
    except fees.PriceError as exc:
        return bad("period", exc.zh, exc.en)
    p = request.state.principal
    override: dict[str, Any] = {}
    if p.role in ("bureau", "finance"):  # a provider cannot feed its own SLA figures into its assessment
        try:
            override = figures_of({k: q.get(k) for k in SLA_FIGURES})
        except ValueError as exc:
            return bad("schema", f"{exc} 不是有效数值", f"{exc} is not a valid non-negative number")
        wrong = bad_figures(override)
        if wrong:
            return bad("schema", "指标超出取值范围", f"figures out of range: {', '.join(wrong)}")
    a = await run_assessment(store_of(request), provider, first, last, scheme(), override,
                             f"request by {p.name} ({p.role})")  # fmt: skip
    with gc_paused():
        doc = assessment_doc(a)
    await audit(request, "assessment_view", provider, f"{first}..{last} format={fmt} net={doc['totals']['net']}")
    name = f"assessment-{provider}-{first}-{last}"
    if fmt == "csv":
        return download(assessment_csv(doc), fmt, name)
    if fmt == "xlsx":
        return download(assessment_xlsx(doc), fmt, name)
    return FastJSONResponse(doc)
