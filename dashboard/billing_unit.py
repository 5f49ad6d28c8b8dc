"""Annual evaluation of each government unit (§32): ``/api/v1/reports/unit?unit=U&year=YYYY``.

市大数据局对政务云使用情况进行年度评价：systems on cloud, utilization, security status and the open
right-sizing recommendations of one unit for one year, as a printable Chinese page, JSON, CSV or
XLSX. The bureau and auditors see every unit, a unit user its own, a district user the units of
its district; providers and finance are refused. SQL: ``sql/reports/report_unit_*.sql``; the
unit-level arithmetic: :mod:`opscenter.evaluation`; docs/reports.md has the rules.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import sql
from dashboard.auth import require
from dashboard.billing_common import audit, jsonable, output_format, scoped_param, store_of
from dashboard.billing_render import Layout, report_response
from dashboard.billing_reports import (
    BAND_HIGH_PCT,
    BAND_LOW_PCT,
    REPORT_FORMATS,
    org_name,
    report_header,
)
from dashboard.http import bad
from opscenter import evaluation, fees
from opscenter.store import AsyncStore


def evaluation_year(text: str) -> tuple[date, date]:
    """[Jan 1, Dec 31] of ``YYYY``; PriceError (zh/en) otherwise."""
    try:
        y = int(text)
        first, last = date(y, 1, 1), date(y, 12, 31)
    except ValueError:
        raise fees.PriceError("year", "year 须为年份，如 2025", "year must be a year such as 2025") from None
    fees.parse_day(first, "year")  # within the stored date range
    fees.parse_day(last, "year")
    return first, last


async def unit_evaluation(store: AsyncStore, unit: str, year: int, now: datetime | None = None) -> dict[str, Any]:
    """The evaluation of ``unit`` for ``year`` (cut at today when the year is not over)."""
    first, last = evaluation_year(str(year))
    days, head = report_header(first, last, now or datetime.now(timezone.utc))
    resources = await store.query_dicts(sql.report("report_unit_resources"),
                                        {"unit": unit, **days, "low": BAND_LOW_PCT, "high": BAND_HIGH_PCT})  # fmt: skip
    ids = [r["resource_id"] for r in resources]
    incidents = await store.query_dicts(sql.report("report_unit_incidents"), {"resources": ids, **days})
    recs = await store.query_dicts(sql.report("report_unit_recommendations"), {"resources": ids, **days})
    name = await org_name(store, "unit", unit)
    low = [r for r in resources if r["band"] == "low"]
    return {
        "unit_id": unit, "unit_name": name, "year": year, "kind": "unit_annual", "label": f"{year} 年度",
        "title": f"{name} 政务云使用情况年度评价（{year} 年度）",
        "title_en": "Annual evaluation of the unit's use of the government cloud (§32)", **head,
        "summary": evaluation.summary(resources, incidents, recs),
        "states": evaluation.states(resources), "resources": jsonable(resources), "downsizing": jsonable(low),
        "incidents": jsonable(incidents), "recommendations": jsonable(recs),
    }  # fmt: skip


UNIT_LAYOUT = Layout(
    header=("unit_id", "year", "from", "to", "as_of", "period_to_effective", "generated_at"),
    summary=(
        ("resources", "资源数（含期内注销）"), ("in_service_at_end", "期末在用资源数"), ("delivered_in_period", "年内交付"),
        ("deregistered_in_period", "年内注销"), ("vcpu", "期末在用 vCPU"), ("mem_gb", "期末在用内存 GB"),
        ("storage_gb", "期末在用存储 GB"), ("resource_days", "在服务资源·天"),
        ("cpu_mean_pct", "CPU 均值 %（按容量加权）"), ("cpu_p95_pct", "CPU p95 %（按容量加权）"),
        ("memory_mean_pct", "内存均值 %（按容量加权）"), ("memory_p95_pct", "内存 p95 %（按容量加权）"),
        ("storage_mean_pct", "存储均值 %（按容量加权）"), ("storage_p95_pct", "存储 p95 %（按容量加权）"),
        ("days_low", "偏低资源·天（p95 < 20 %）"), ("days_normal", "正常资源·天"), ("days_high", "偏高资源·天（p95 > 80 %）"),
        ("downsizing_candidates", "持续偏低、建议缩容的资源"), ("incidents", "故障数（不含演练）"), ("drills", "演练数"),
        ("breaches", "SLA 超时次数"), ("open_p1", "未恢复 P1 故障"), ("open_p2", "未恢复 P2 故障"),
        ("recommendations_open", "未办结调整建议"),
    ),
    tables=(
        ("states", "系统上云情况（期末状态）", "systems on cloud, state at the end of the period",
         ("state", "state_zh", "resources")),
        ("resources", "资源明细与利用率", "resources and utilization",
         ("resource_id", "name", "provider_id", "state", "resource_class", "vcpu", "mem_gb", "storage_gb", "delivered",
          "deregistered", "days_in_service", "days_measured", "cpu_mean", "cpu_p95", "mem_mean", "mem_p95",
          "storage_mean", "storage_p95", "days_low", "days_normal", "days_high", "band")),
        ("downsizing", "持续偏低的资源（建议缩容）", "persistently low resources, candidates for downsizing",
         ("resource_id", "name", "vcpu", "mem_gb", "storage_gb", "cpu_p95", "mem_p95", "storage_p95", "days_low")),
        ("incidents", "系统安全状况：故障与 SLA", "security status: incidents and SLA",
         ("severity", "opened", "drills", "resolved", "response_breaches", "restore_breaches", "open_now")),
        ("recommendations", "未办结的调整建议", "open right-sizing recommendations",
         ("rec_id", "resource_id", "metric", "direction", "status", "current_size", "target_size", "size_unit",
          "p95_pct", "proposed_on")),
    ),
    columns_zh={
        "state": "状态", "state_zh": "状态（中文）", "resources": "资源数", "resource_id": "资源编号", "name": "名称",
        "provider_id": "云服务商", "resource_class": "类别", "vcpu": "vCPU", "mem_gb": "内存 GB", "storage_gb": "存储 GB",
        "delivered": "交付日", "deregistered": "注销日", "days_in_service": "在服务天数", "days_measured": "有监测数据天数",
        "cpu_mean": "CPU 均值 %", "cpu_p95": "CPU p95 %", "mem_mean": "内存均值 %", "mem_p95": "内存 p95 %",
        "storage_mean": "存储均值 %", "storage_p95": "存储 p95 %", "days_low": "偏低天数", "days_normal": "正常天数",
        "days_high": "偏高天数", "band": "全年区间", "severity": "级别", "opened": "故障数", "drills": "演练",
        "resolved": "已恢复", "response_breaches": "响应超时", "restore_breaches": "恢复超时", "open_now": "当前未恢复",
        "rec_id": "建议编号", "metric": "指标", "direction": "方向", "current_size": "当前规格", "target_size": "建议规格",
        "size_unit": "单位", "p95_pct": "p95 %", "proposed_on": "提出日期",
    },
)  # fmt: skip


def unit_param(request: Request, value: str) -> str | JSONResponse:
    """The unit a caller may evaluate: a unit user its own, a district user one of its district's, else any."""
    unit = scoped_param(request, value, "unit", "unit", "无权查看其他单位的评价", "a unit sees only its own evaluation")
    p = request.state.principal
    if p.role == "district" and isinstance(unit, str):
        # the unit's district: where its resources are (the registry, as for every scoped view)
        districts = {r.district_id for r in request.app.state.services.registry.all() if r.unit_id == unit}
        if districts != {p.scope}:
            return bad("forbidden", "该单位不属于本区县", "the unit is not in the caller's district", 403)
    return unit


@require("bureau", "auditor", "unit", "district")
async def get_unit_report(request: Request) -> Response:
    """The annual evaluation of a unit (§32) as HTML, JSON, CSV or XLSX."""
    q = request.query_params
    unit = unit_param(request, q.get("unit", ""))
    if isinstance(unit, JSONResponse):
        return unit
    fmt = output_format(request, REPORT_FORMATS)
    if isinstance(fmt, JSONResponse):
        return fmt
    try:
        first, _ = evaluation_year(q.get("year", ""))
    except fees.PriceError as exc:
        return bad("period", exc.zh, exc.en)
    doc = await unit_evaluation(store_of(request), unit, first.year)
    await audit(request, "report_view", unit, f"unit_annual {first.year} format={fmt}")
    return report_response(doc, UNIT_LAYOUT, fmt, f"report-unit-{unit}-{first.year}")
