"""Provider reports (§26): ``/api/v1/reports/provider``, monthly / quarterly / annual, HTML, JSON, CSV or XLSX.

Each section is one ``sql/reports/report_provider_*.sql``; a period that reaches beyond today is
counted up to today (``as_of``, ``period_to_effective``). docs/billing.md has the figures.
"""

from __future__ import annotations

import html
from datetime import date, datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import sql
from dashboard.auth import require
from dashboard.billing_common import (
    CST,
    audit,
    day_params,
    jsonable,
    period_note,
    provider_and_format,
    store_of,
)
from dashboard.billing_render import Layout, cell, report_response
from dashboard.billing_sla import SLA_FIGURES, computed_figures, stored_sla_row
from dashboard.http import bad
from opscenter import fees
from opscenter.store import AsyncStore

REPORT_KINDS = {"monthly": ("月报", "monthly"), "quarterly": ("季报", "quarterly"), "annual": ("年报", "annual")}
BAND_LOW_PCT, BAND_HIGH_PCT = 20.0, 80.0  # §29
REPORT_FORMATS = ("html", "json", "csv", "xlsx")


def report_period(kind: str, period: str) -> tuple[date, date, str]:
    """[from, to] and a Chinese label: monthly ``YYYY-MM``, quarterly ``YYYY-Qn``, annual ``YYYY``."""
    try:
        if kind == "monthly":
            y, m = (int(x) for x in period.split("-"))
            first = date(y, m, 1)
            last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            return first, last, f"{y} 年 {m} 月"
        if kind == "quarterly":
            y_text, q_text = period.upper().split("-Q")
            y, q = int(y_text), int(q_text)
            if not 1 <= q <= 4:
                raise ValueError(period)
            first = date(y, 3 * q - 2, 1)
            last = (date(y, 3 * q, 28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            return first, last, f"{y} 年第 {q} 季度"
        if kind == "annual":
            y = int(period)
            return date(y, 1, 1), date(y, 12, 31), f"{y} 年度"
    except ValueError:
        pass
    raise fees.PriceError("period", "报告期无效：月报 YYYY-MM，季报 YYYY-Qn，年报 YYYY",
                          "period: monthly YYYY-MM, quarterly YYYY-Qn, annual YYYY")  # fmt: skip


async def org_name(store: AsyncStore, kind: str, org_id: str) -> str:
    """The Chinese name of a provider, unit or district (``orgs``), or its id when unknown."""
    rows = await store.query("SELECT argMax(name_zh, version) FROM orgs WHERE kind = {k:String} AND org_id = {o:String} "
                             "GROUP BY org_id", {"k": kind, "o": org_id})  # fmt: skip
    return rows[0][0] if rows and rows[0][0] else org_id


def report_header(first: date, last: date, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """(query parameters cut at today, the report's period fields: from, to, as_of, … generated_at)."""
    days = day_params(first, last, now)
    effective = None if days["to"] < first else days["to"]
    head = {"from": first.isoformat(), "to": last.isoformat(), **period_note(first, last, days["today"], effective),
            "generated_at": now.astimezone(CST).isoformat(timespec="seconds")}  # fmt: skip
    return days, head


async def provider_report(store: AsyncStore, provider: str, kind: str, first: date, last: date, label: str,
                          now: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """The provider report's figures: resources (utilization, telemetry quality), incidents, SLA, recommendations."""
    now = now or datetime.now(timezone.utc)
    days, head = report_header(first, last, now)
    p = {"provider": provider, **days}
    resources = await store.query_dicts(sql.report("report_provider_resources"),
                                        {**p, "low": BAND_LOW_PCT, "high": BAND_HIGH_PCT})  # fmt: skip
    incidents = await store.query_dicts(sql.report("report_provider_incidents"), p)
    recs = await store.query_dicts(sql.report("report_provider_recommendations"), p)
    rejected = await store.query_dicts(sql.report("report_provider_deadletters"), p)
    stored = await stored_sla_row(store, provider, first, last)
    computed = await computed_figures(store, provider, first, last, now) or {}
    # per figure: entered by the bureau (sla_results) wins, else computed (streams/sla_figures.py)
    sla = {k: (stored[k] if stored and stored.get(k) is not None else computed.get(k)) for k in SLA_FIGURES}
    sla_sources = {k: ("sla_results" if stored and stored.get(k) is not None else "computed") for k in SLA_FIGURES
                   if sla[k] is not None}  # fmt: skip
    sla["fault_rate"] = computed.get("fault_rate")
    if not any(v is not None for v in sla.values()):
        sla = {}
    comp = [r["completeness_pct"] for r in resources if r["completeness_pct"] is not None]
    n_days = sum(r["days_in_service"] for r in resources)
    summary = {
        "resources": len(resources), "resource_days": n_days,
        "completeness_pct": round(sum(c * r["days_in_service"] for c, r in zip(comp, resources)) / n_days, 2)
        if n_days and len(comp) == len(resources) else None,
        "low": sum(r["band"] == "low" for r in resources), "high": sum(r["band"] == "high" for r in resources),
        "incidents": sum(i["opened"] for i in incidents), "drills": sum(i["drills"] for i in incidents),
        "breaches": sum(i["response_breaches"] + i["restore_breaches"] for i in incidents),
        "recommendations": sum(r["recommendations"] for r in recs),
        "recommendations_open": sum(r["recommendations"] for r in recs if r["status"] in ("proposed", "approved")),
        "rejected_inputs": sum(r["rejected"] for r in rejected),
    }  # fmt: skip
    name = await org_name(store, "provider", provider)
    return {
        "provider_id": provider, "provider_name": name,
        "kind": kind, "kind_zh": REPORT_KINDS[kind][0], "label": label,
        "title": f"{name} 云服务运维{REPORT_KINDS[kind][0]}（{label}）", "title_en": f"Provider {kind} report",
        **head,
        "summary": summary, "sla_results": jsonable(sla) if sla else None, "sla_sources": sla_sources,
        "sla_note": "" if sla else "本期无 SLA 数据 / no SLA data for the period",
        "resources": jsonable(resources), "incidents": jsonable(incidents), "recommendations": jsonable(recs),
        "rejected_inputs": jsonable(rejected),
    }  # fmt: skip


def _sla_section(doc: dict[str, Any]) -> list[str]:
    out = ['<h2>服务质量（SLA）<span class="en">service quality</span></h2>']
    sla = doc["sla_results"]
    if sla:
        out.append("<table>" + "".join(f"<tr><th>{html.escape(k)}</th>{cell(sla[k])}</tr>"
                                       for k in (*SLA_FIGURES, "fault_rate") if k in sla) + "</table>")  # fmt: skip
    else:
        out.append(f"<p>{html.escape(doc['sla_note'])}</p>")
    return out


PROVIDER_LAYOUT = Layout(
    header=("provider_id", "kind", "from", "to", "as_of", "period_to_effective", "generated_at"),
    summary=(
        ("resources", "资源数"), ("resource_days", "在服务资源·天"), ("completeness_pct", "监测数据完整率 %"),
        ("low", "利用率偏低资源（p95 < 20 %）"), ("high", "利用率偏高资源（p95 > 80 %）"), ("incidents", "故障数（不含演练）"),
        ("drills", "演练数"), ("breaches", "SLA 超时次数"), ("recommendations", "调整建议数"),
        ("recommendations_open", "未办结建议数"), ("rejected_inputs", "被拒收数据条数"),
    ),
    tables=(
        ("resources", "资源利用率与监测数据质量", "utilization and telemetry quality",
         ("resource_id", "name", "unit_id", "state", "days_in_service", "completeness_pct", "late_pct", "cpu_mean",
          "cpu_p95", "mem_mean", "mem_p95", "storage_mean", "storage_p95", "band")),
        ("incidents", "故障与 SLA", "incidents and SLA",
         ("severity", "opened", "drills", "resolved", "response_min", "restore_min", "response_breaches",
          "restore_breaches")),
        ("recommendations", "调整建议及处理结果", "recommendations and their fate", ("direction", "status", "recommendations")),
        ("rejected_inputs", "被拒收的数据", "rejected inputs", ("reason", "rejected")),
    ),
    columns_zh={
        "resource_id": "资源编号", "name": "名称", "unit_id": "使用单位", "state": "状态", "days_in_service": "在服务天数",
        "completeness_pct": "完整率 %", "late_pct": "迟到率 %", "cpu_mean": "CPU 均值 %", "cpu_p95": "CPU p95 %",
        "mem_mean": "内存均值 %", "mem_p95": "内存 p95 %", "storage_mean": "存储均值 %", "storage_p95": "存储 p95 %",
        "band": "区间", "severity": "级别", "opened": "故障数", "drills": "演练", "resolved": "已恢复",
        "response_min": "响应（分钟）", "restore_min": "恢复（分钟）", "response_breaches": "响应超时",
        "restore_breaches": "恢复超时", "direction": "方向", "status": "状态", "recommendations": "建议数",
        "reason": "原因", "rejected": "条数",
    },
    after_summary=_sla_section,
)  # fmt: skip


@require("bureau", "finance", "provider")
async def get_provider_report(request: Request) -> Response:
    """A provider's monthly / quarterly / annual report (§26) as HTML, JSON, CSV or XLSX."""
    q = request.query_params
    got = provider_and_format(request, REPORT_FORMATS)
    if isinstance(got, JSONResponse):
        return got
    provider, fmt = got
    kind = q.get("kind", "monthly")
    if kind not in REPORT_KINDS:
        return bad("kind", "kind 仅支持 monthly、quarterly、annual", "kind must be monthly, quarterly or annual")
    try:
        first, last, label = report_period(kind, q.get("period", ""))
    except fees.PriceError as exc:
        return bad("period", exc.zh, exc.en)
    doc = await provider_report(store_of(request), provider, kind, first, last, label)
    await audit(request, "report_view", provider, f"{kind} {first}..{last} format={fmt}")
    return report_response(doc, PROVIDER_LAYOUT, fmt, f"report-{provider}-{kind}-{first}")
