"""Billing API (R5; §6, §12, §33–§35): price list, bureau judgements, SLA results, fee assessments.

- ``/api/v1/prices``: the billing standard; the Finance Bureau appends versions (never edits).
- ``/api/v1/judgements``: services the bureau judged unqualified (excluded from billing, §34).
- ``/api/v1/sla-results``: a provider's SLA results of a period, entered by the bureau until the
  SLA issue computes them; the input of the quality deduction (§33).
- ``/api/v1/assessments``: the line-item assessment as JSON, CSV or XLSX.
- ``/api/v1/reports/provider``: a provider's monthly / quarterly / annual report (§26) as a printable
  HTML page, JSON, CSV or XLSX.

Every change is written to the audit log. Queries are ``sql/reports/assessment_*.sql`` with bound
parameters; the money is computed by :mod:`opscenter.fees`. docs/billing.md has the rules.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import math
import uuid
from dataclasses import asdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

import sql
from dashboard.http import bad as _bad
from dashboard.http import json_object as _body
from dashboard.auth import client_ip, require
from opscenter import fees
from opscenter.datafile import load_yaml
from opscenter.store import AsyncStore

CST = timezone(timedelta(hours=8))
MAX_SPAN_DAYS = 1100
PRICE_COLUMNS = ("version_id", "resource_class", "valid_from", "valid_to", "vcpu_day", "mem_gb_day", "storage_gb_day",
                 "correction", "reason", "created_by", "created_at")  # fmt: skip
JUDGEMENT_COLUMNS = ("judgement_id", "action", "provider_id", "resource_id", "from_day", "to_day", "reason", "actor", "ts")
SLA_FIGURES = ("availability_pct", "within_target_pct", "breaches_p1", "breaches_p2", "breaches_p3", "breaches_p4",
               "satisfaction", "completeness_pct")  # fmt: skip
SLA_COLUMNS = ("provider_id", "period_from", "period_to", *SLA_FIGURES, "source", "entered_by", "ts")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_price_lock = asyncio.Lock()  # one writer at a time per process: validation then append
_scheme: fees.DeductionScheme | None = None


def load_scheme(path: str | Path = fees.DEFAULT_SCHEME_FILE) -> fees.DeductionScheme:
    """Read and validate the deduction scheme (a bad file stops the start, naming file, line, field)."""
    return fees.parse_scheme(load_yaml(path))


def scheme() -> fees.DeductionScheme:
    global _scheme
    if _scheme is None:
        _scheme = load_scheme()
    return _scheme


def today_cst(now: datetime | None = None) -> date:
    """Today's calendar day in Asia/Shanghai."""
    return (now or datetime.now(timezone.utc)).astimezone(CST).date()


def _store(request: Request) -> AsyncStore:
    return request.app.state.services.store


async def _audit(request: Request, action: str, target: str, detail: str, ok: bool = True) -> None:
    p = request.state.principal
    await request.app.state.audit.record(p.name, p.role, action, target, detail, client_ip(request), ok)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


# -- price list (§6) ----------------------------------------------------------------------------


async def price_versions(store: AsyncStore) -> list[fees.PriceVersion]:
    """Every version ever appended, oldest first."""
    rows = await store.query_dicts(f"SELECT {', '.join(PRICE_COLUMNS)} FROM price_versions ORDER BY created_at, version_id")
    return [fees.PriceVersion(**{**r, "correction": bool(r["correction"])}) for r in rows]


@require("bureau", "finance", "auditor", "provider")
async def list_prices(request: Request) -> Response:
    versions = await price_versions(_store(request))
    return JSONResponse({"versions": [_jsonable(asdict(v)) for v in versions]})


@require("finance")
async def create_price(request: Request) -> Response:
    """Append a price-list version (finance only); validated against the existing ones, audited."""
    doc = await _body(request)
    if doc is None:
        return _bad("unparseable", "请求体不是 JSON 对象", "body is not a JSON object")
    p = request.state.principal
    now = datetime.now(timezone.utc)
    async with _price_lock:
        try:
            version = fees.parse_price(doc, f"pv-{uuid.uuid4().hex[:12]}", p.name, now)
            fees.check_new_version(version, await price_versions(_store(request)), today_cst(now))
        except fees.PriceError as exc:
            await _audit(request, "price_create", str(doc.get("valid_from", "")), f"refused: {exc.en}"[:1000], False)
            return JSONResponse({"error": "invalid_price", "field": exc.field, "message": exc.zh, "message_en": exc.en},
                                status_code=422)  # fmt: skip
        row = [getattr(version, c) for c in PRICE_COLUMNS]
        row[PRICE_COLUMNS.index("correction")] = int(version.correction)
        await _store(request).insert_retrying("price_versions", [[v] for v in row], PRICE_COLUMNS)
    detail = (f"class={version.resource_class} from={version.valid_from} to={version.valid_to or 'open'} "
              f"vcpu_day={version.vcpu_day} mem_gb_day={version.mem_gb_day} storage_gb_day={version.storage_gb_day} "
              f"correction={int(version.correction)} reason={version.reason}")  # fmt: skip
    await _audit(request, "price_create", version.version_id, detail)
    return JSONResponse(_jsonable(asdict(version)), status_code=201)


# -- bureau judgements (§34) --------------------------------------------------------------------


def _provider_param(request: Request, value: str) -> str | JSONResponse:
    """The provider a caller may ask about: its own for a provider, any for the bureau and finance."""
    p = request.state.principal
    if p.role == "provider":
        if value and value != p.scope:
            return _bad("forbidden", "无权查看其他云服务商的数据", "a provider sees only its own data", 403)
        return p.scope
    if not value:
        return _bad("schema", "缺少 provider 参数", "provider is required")
    return value


@require("bureau", "finance", "auditor", "provider")
async def list_judgements(request: Request) -> Response:
    provider = _provider_param(request, request.query_params.get("provider", ""))
    if isinstance(provider, JSONResponse):
        return provider
    rows = await _store(request).query_dicts(
        "SELECT judgement_id, argMinIf(resource_id, ts, action = 'judge') AS resource_id, "
        "argMinIf(from_day, ts, action = 'judge') AS from_day, argMinIf(to_day, ts, action = 'judge') AS to_day, "
        "argMinIf(reason, ts, action = 'judge') AS reason, argMinIf(actor, ts, action = 'judge') AS judged_by, "
        "minIf(ts, action = 'judge') AS judged_at, countIf(action = 'withdraw') > 0 AS withdrawn "
        "FROM service_judgements WHERE provider_id = {p:String} GROUP BY judgement_id ORDER BY judged_at",
        {"p": provider},
    )
    return JSONResponse({"provider_id": provider, "judgements": _jsonable(rows)})


@require("bureau")
async def create_judgement(request: Request) -> Response:
    """The bureau judges a provider's service (one resource, or all: resource_id '') unqualified for days."""
    doc = await _body(request)
    if doc is None:
        return _bad("unparseable", "请求体不是 JSON 对象", "body is not a JSON object")
    provider, resource = str(doc.get("provider_id") or ""), str(doc.get("resource_id") or "")
    reason = str(doc.get("reason") or "").strip()
    try:
        first, last = fees.parse_day(doc.get("from"), "from"), fees.parse_day(doc.get("to"), "to")
    except fees.PriceError as exc:
        return _bad("schema", exc.zh, exc.en)
    if not provider or not reason or last < first or len(reason) > 500:
        return _bad("schema", "需要 provider_id、原因（500 字以内）及有效的起止日期",
                    "provider_id, a reason (≤ 500 characters) and from ≤ to are required")  # fmt: skip
    if resource and not await _store(request).query(
        "SELECT 1 FROM inventory WHERE resource_id = {r:String} AND provider_id = {p:String} LIMIT 1",
        {"r": resource, "p": provider},
    ):
        return _bad("not_found", "该云服务商名下无此资源", f"provider {provider} has no resource {resource}", 422)
    jid = f"jd-{uuid.uuid4().hex[:12]}"
    p = request.state.principal
    row = [jid, "judge", provider, resource, first, last, reason, p.name, datetime.now(timezone.utc)]
    await _store(request).insert_retrying("service_judgements", [[v] for v in row], JUDGEMENT_COLUMNS)
    await _audit(request, "judgement_create", jid, f"provider={provider} resource={resource or '*'} {first}..{last} {reason}")
    return JSONResponse({"judgement_id": jid, "provider_id": provider, "resource_id": resource, "from": str(first),
                         "to": str(last), "reason": reason}, status_code=201)  # fmt: skip


@require("bureau")
async def withdraw_judgement(request: Request) -> Response:
    jid = request.path_params["judgement_id"]
    rows = await _store(request).query(
        "SELECT provider_id, countIf(action = 'withdraw') FROM service_judgements WHERE judgement_id = {j:String} "
        "GROUP BY provider_id", {"j": jid},
    )  # fmt: skip
    if not rows or rows[0][1]:
        await _audit(request, "judgement_withdraw", jid, "not found or already withdrawn", False)
        return _bad("not_found", "认定不存在或已撤销", "no such judgement, or already withdrawn", 404)
    doc = await _body(request) or {}
    p = request.state.principal
    row = [jid, "withdraw", rows[0][0], "", date(1970, 1, 1), date(1970, 1, 1), str(doc.get("reason") or "")[:500],
           p.name, datetime.now(timezone.utc)]  # fmt: skip
    await _store(request).insert_retrying("service_judgements", [[v] for v in row], JUDGEMENT_COLUMNS)
    await _audit(request, "judgement_withdraw", jid, row[6])
    return JSONResponse({"judgement_id": jid, "withdrawn": True})


# -- SLA results of a period (§33) --------------------------------------------------------------


def _figure(name: str, value: Any) -> float | int | None:
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(name) from None
    if math.isnan(v) or math.isinf(v) or v < 0:
        raise ValueError(name)
    if name.startswith("breaches_"):
        if v != int(v) or v >= 2**32:
            raise ValueError(name)
        return int(v)
    return v


def _figures_of(values: dict[str, Any]) -> dict[str, Any]:
    """Typed SLA figures from a body or query; ValueError names the first bad one."""
    return {k: _figure(k, values.get(k)) for k in SLA_FIGURES}


def sla_figures(row: dict[str, Any] | None, override: dict[str, Any], override_source: str,
                computed_completeness: float | None) -> fees.SlaFigures:  # fmt: skip
    """The figures for the deduction and where each came from: request > stored row > computed completeness."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if row:
        stored = f"sla_results ({row['source'] or 'entered'} by {row['entered_by']} at {_jsonable(row['ts'])})"
        for k in SLA_FIGURES:
            if row.get(k) is not None:
                values[k], sources[k] = row[k], stored
    for k, v in override.items():
        if v is not None:
            values[k], sources[k] = v, override_source
    if values.get("completeness_pct") is None and computed_completeness is not None:
        values["completeness_pct"] = computed_completeness
        sources["completeness_pct"] = "computed from rollup_1d over the assessed resource-days"
    counts = [values.get(f"breaches_p{i}") for i in range(1, 5)]
    breaches = None if all(c is None for c in counts) else {f"P{i + 1}": int(c or 0) for i, c in enumerate(counts)}
    src = {k: v for k, v in sources.items() if not k.startswith("breaches_")}
    if breaches is not None:
        src["breaches"] = next(sources[f"breaches_p{i}"] for i in range(1, 5) if f"breaches_p{i}" in sources)
    return fees.SlaFigures(values.get("availability_pct"), values.get("within_target_pct"), breaches,
                           values.get("satisfaction"), values.get("completeness_pct"), src)  # fmt: skip


async def stored_sla_row(store: AsyncStore, provider: str, first: date, last: date) -> dict[str, Any] | None:
    rows = await store.query_dicts(
        f"SELECT {', '.join(SLA_COLUMNS)} FROM sla_results WHERE provider_id = {{p:String}} "
        "AND period_from = {f:Date} AND period_to = {t:Date} ORDER BY ts DESC LIMIT 1",
        {"p": provider, "f": first, "t": last},
    )
    return rows[0] if rows else None


@require("bureau")
async def put_sla_results(request: Request) -> Response:
    """The bureau records a provider's SLA results of a period (newest row wins), audited."""
    doc = await _body(request)
    if doc is None:
        return _bad("unparseable", "请求体不是 JSON 对象", "body is not a JSON object")
    provider = str(doc.get("provider_id") or "")
    try:
        first, last = fees.parse_day(doc.get("from"), "from"), fees.parse_day(doc.get("to"), "to")
        figs = _figures_of(doc)
    except fees.PriceError as exc:
        return _bad("schema", exc.zh, exc.en)
    except ValueError as exc:
        return _bad("schema", f"{exc} 不是有效数值", f"{exc} is not a valid non-negative number")
    bad = fees.check_figures(scheme(), sla_figures(None, figs, "", None))
    if not provider or last < first or bad:
        return _bad("schema", "需要 provider_id、有效的起止日期及取值范围内的指标",
                    f"provider_id, from ≤ to and figures in range are required (bad: {', '.join(bad) or '-'})")  # fmt: skip
    p = request.state.principal
    source = str(doc.get("source") or "bureau")[:200]
    row = [provider, first, last, *figs.values(), source, p.name, datetime.now(timezone.utc)]
    await _store(request).insert_retrying("sla_results", [[v] for v in row], SLA_COLUMNS)
    await _audit(request, "sla_results_put", provider, f"{first}..{last} " + " ".join(f"{k}={v}" for k, v in figs.items()))
    return JSONResponse({"provider_id": provider, "from": str(first), "to": str(last), **figs}, status_code=201)


# -- assessment (§12, §34, §35) -----------------------------------------------------------------


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
    """Query the runs and the unregistered telemetry, then assemble the assessment (fees.assess)."""
    params = {"provider": provider, "from": first, "to": last,
              "threshold": float(sch.supervision_threshold_pct) / 100.0}  # fmt: skip
    runs = await store.query_dicts(sql.report("assessment_lines"), params)
    unregistered = await store.query_dicts(sql.report("assessment_unregistered"), {"provider": provider, "from": first,
                                                                                   "to": last})  # fmt: skip
    row = await stored_sla_row(store, provider, first, last)
    figs = sla_figures(row, override or {}, override_source, fees.completeness_pct(runs))
    return fees.assess(provider, first, last, runs, unregistered, sch, figs, now or datetime.now(timezone.utc))


def _line_doc(x: fees.Line) -> dict[str, Any]:
    doc = _jsonable(asdict(x))
    if x.status != "billable":
        doc["reason_zh"], doc["reason_en"] = fees.EXCLUSION_REASONS[x.status]
    return doc


FIGURE_NAMES = {
    "availability_pct": ("可用率 %", "availability %"), "within_target_pct": ("按时处置率 %", "within target %"),
    "breaches": ("SLA 超时次数", "SLA breaches"), "satisfaction": ("满意度", "satisfaction"),
    "completeness_pct": ("监测数据完整率 %", "telemetry completeness %"),
}  # fmt: skip


def assessment_doc(a: fees.Assessment) -> dict[str, Any]:
    """The JSON of an assessment: every amount a decimal string in yuan."""
    d = a.deduction
    missing_zh = "、".join(FIGURE_NAMES[m][0] for m in d.missing)
    quality = {
        "status": "partial" if d.missing else "complete",
        "scheme": Path(scheme().source).name,
        "components": [_jsonable(asdict(c)) for c in d.components],
        "missing": list(d.missing),
        "uncapped_pct": str(d.uncapped_pct), "cap_pct": str(d.cap_pct), "pct": str(d.pct),
        "note": (f"以下 SLA 指标尚未提供，未计入扣减，结果为暂定：{missing_zh}" if d.missing else "SLA 指标齐全"),
        "note_en": (f"SLA figures not available, not deducted for; provisional: {', '.join(d.missing)}"
                    if d.missing else "all SLA figures present"),
    }  # fmt: skip
    t = a.totals
    return {
        "provider_id": a.provider_id, "from": a.period_from.isoformat(), "to": a.period_to.isoformat(),
        "generated_at": a.generated_at.isoformat(), "currency": "CNY",
        "rounding": "each line: days × day rate, rounded once to 0.01 yuan (half up); deduction: billable × pct, "
                    "rounded once the same way",
        "supervision_threshold_pct": str(a.supervision_threshold_pct),
        "telemetry_completeness_pct": a.telemetry_completeness_pct,
        "provisional": a.provisional,
        "lines": [_line_doc(x) for x in a.lines],
        "exclusions": [_line_doc(x) for x in a.exclusions],
        "unregistered": [{**_jsonable(u), "reason_zh": "未在云管平台登记的资源（§34）",
                          "reason_en": "resource not registered with the platform (§34)"} for u in a.unregistered],
        "quality": quality,
        "totals": {"gross": str(t.gross), "excluded": str(t.excluded), "billable": str(t.billable),
                   "deduction_pct": str(t.deduction_pct), "deduction": str(t.deduction), "net": str(t.net)},
    }  # fmt: skip


CSV_COLUMNS = ("section", "resource_id", "name", "unit_id", "status", "reason", "version_id", "first_day", "last_day",
               "days", "vcpu", "mem_gb", "storage_gb", "vcpu_day", "mem_gb_day", "storage_gb_day", "day_rate",
               "amount", "completeness_pct")  # fmt: skip
TOTAL_LABELS = (("gross", "应计金额", "gross"), ("excluded", "不纳入结算", "excluded"),
                ("billable", "纳入结算", "billable"), ("deduction_pct", "质量扣减比例 %", "deduction %"),
                ("deduction", "质量扣减", "deduction"), ("net", "核定金额", "net"))  # fmt: skip


def _line_cells(section: str, x: dict[str, Any]) -> list[Any]:
    reason = x.get("judgement_reason") or x.get("reason_zh", "")
    return [section, x["resource_id"], x["name"], x["unit_id"], x["status"], reason, x["version_id"], x["first_day"],
            x["last_day"], x["days"], x["vcpu"], x["mem_gb"], x["storage_gb"], x["vcpu_day"], x["mem_gb_day"],
            x["storage_gb_day"], x["day_rate"], x["amount"], x["completeness_pct"]]  # fmt: skip


def assessment_csv(doc: dict[str, Any]) -> str:
    """One CSV: lines, exclusions, unregistered resources, then the totals (section column says which)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for x in doc["lines"]:
        w.writerow(_line_cells("line", x))
    for x in doc["exclusions"]:
        w.writerow(_line_cells("exclusion", x))
    for u in doc["unregistered"]:
        w.writerow(["unregistered", u["resource_id"], "", "", u["inventory_state"], u["reason_zh"], "",
                    u["first_seen"], u["last_seen"], u["days_seen"]] + [""] * 9)  # fmt: skip
    for key, zh, en in TOTAL_LABELS:
        w.writerow(["total", key, f"{zh} {en}"] + [""] * 14 + [doc["totals"][key], ""])
    return "\ufeff" + buf.getvalue()


def assessment_xlsx(doc: dict[str, Any]) -> bytes:
    """An XLSX workbook: 汇总 (summary with the totals), 明细, 剔除, 未登记, 质量扣减."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "汇总 Summary"
    ws.append(["云服务费核算 Fee assessment"])
    for label, value in (("云服务商 Provider", doc["provider_id"]), ("开始 From", doc["from"]), ("结束 To", doc["to"]),
                         ("生成时间 Generated", doc["generated_at"]), ("暂定 Provisional", "是 yes" if doc["provisional"] else "否 no"),
                         ("质量扣减说明 Quality", doc["quality"]["note"])):  # fmt: skip
        ws.append([label, value])
    ws.append([])
    ws.append(["项目 Item", "金额（元）Yuan", "key"])
    for key, zh, en in TOTAL_LABELS:
        ws.append([f"{zh} {en}", Decimal(doc["totals"][key]), key])
    numeric = {"days", "vcpu", "mem_gb", "storage_gb", "vcpu_day", "mem_gb_day", "storage_gb_day", "day_rate", "amount"}
    for title, section, rows in (("明细 Lines", "line", doc["lines"]), ("剔除 Exclusions", "exclusion", doc["exclusions"])):
        sheet = wb.create_sheet(title)
        sheet.append(list(CSV_COLUMNS))
        for x in rows:
            cells = _line_cells(section, x)
            sheet.append([Decimal(v) if c in numeric and c not in ("days", "vcpu", "mem_gb", "storage_gb") else v
                          for c, v in zip(CSV_COLUMNS, cells)])  # fmt: skip
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


def _format(request: Request) -> str:
    f = request.query_params.get("format", "")
    if f:
        return f
    accept = request.headers.get("accept", "")
    if XLSX_TYPE in accept:
        return "xlsx"
    if "text/csv" in accept:
        return "csv"
    return "json"


@require("bureau", "finance", "provider")
async def get_assessment(request: Request) -> Response:
    """A provider's fee assessment for a year, month to date or any range; JSON, CSV or XLSX."""
    q = request.query_params
    provider = _provider_param(request, q.get("provider", ""))
    if isinstance(provider, JSONResponse):
        return provider
    fmt = _format(request)
    if fmt not in ("json", "csv", "xlsx"):
        return _bad("format", "format 仅支持 json、csv、xlsx", "format must be json, csv or xlsx")
    try:
        first, last = period_of(q, today_cst())
    except fees.PriceError as exc:
        return _bad("period", exc.zh, exc.en)
    p = request.state.principal
    override: dict[str, Any] = {}
    if p.role in ("bureau", "finance"):  # a provider cannot feed its own SLA figures into its assessment
        try:
            override = _figures_of({k: q.get(k) for k in SLA_FIGURES})
        except ValueError as exc:
            return _bad("schema", f"{exc} 不是有效数值", f"{exc} is not a valid non-negative number")
        bad = fees.check_figures(scheme(), sla_figures(None, override, "", None))
        if bad:
            return _bad("schema", "指标超出取值范围", f"figures out of range: {', '.join(bad)}")
    a = await run_assessment(_store(request), provider, first, last, scheme(), override,
                             f"request by {p.name} ({p.role})")  # fmt: skip
    doc = assessment_doc(a)
    await _audit(request, "assessment_view", provider, f"{first}..{last} format={fmt} net={doc['totals']['net']}")
    name = f"assessment-{provider}-{first}-{last}"
    if fmt == "csv":
        return Response(assessment_csv(doc), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{name}.csv"'})  # fmt: skip
    if fmt == "xlsx":
        return Response(assessment_xlsx(doc), media_type=XLSX_TYPE,
                        headers={"content-disposition": f'attachment; filename="{name}.xlsx"'})  # fmt: skip
    return JSONResponse(doc)


# -- provider reports (§26, §32) ---------------------------------------------------------------

REPORT_KINDS = {"monthly": ("月报", "monthly"), "quarterly": ("季报", "quarterly"), "annual": ("年报", "annual")}
REPORT_CSS = """body { font-family: "Microsoft YaHei", "PingFang SC", "Noto Sans CJK SC", "WenQuanYi Micro Hei",
  system-ui, sans-serif; margin: 2rem; color: #111; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; } h2 { font-size: 1.2rem; margin: 1.6rem 0 .4rem; }
.meta { color: #444; margin: 0 0 1rem; } .en { color: #666; font-size: .85em; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: .9rem; }
th, td { border: 1px solid #999; padding: .25rem .5rem; text-align: left; } th { background: #eee; }
td.n { text-align: right; }
@media print { body { margin: 1cm; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"""


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


async def provider_report(store: AsyncStore, provider: str, kind: str, first: date, last: date, label: str,
                          now: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """The provider report's figures: resources (utilization, telemetry quality), incidents, SLA, recommendations."""
    p = {"provider": provider, "from": first, "to": last}
    resources = await store.query_dicts(sql.report("report_provider_resources"), {**p, "low": 20.0, "high": 80.0})
    incidents = await store.query_dicts(sql.report("report_provider_incidents"), p)
    recs = await store.query_dicts(sql.report("report_provider_recommendations"), p)
    rejected = await store.query_dicts(sql.report("report_provider_deadletters"), p)
    sla = await stored_sla_row(store, provider, first, last)
    comp = [r["completeness_pct"] for r in resources if r["completeness_pct"] is not None]
    days = sum(r["days_in_service"] for r in resources)
    summary = {
        "resources": len(resources), "resource_days": days,
        "completeness_pct": round(sum(c * r["days_in_service"] for c, r in zip(comp, resources)) / days, 2)
        if days and len(comp) == len(resources) else None,
        "low": sum(r["band"] == "low" for r in resources), "high": sum(r["band"] == "high" for r in resources),
        "incidents": sum(i["opened"] for i in incidents), "drills": sum(i["drills"] for i in incidents),
        "breaches": sum(i["response_breaches"] + i["restore_breaches"] for i in incidents),
        "recommendations": sum(r["recommendations"] for r in recs),
        "recommendations_open": sum(r["recommendations"] for r in recs if r["status"] in ("proposed", "approved")),
        "rejected_inputs": sum(r["rejected"] for r in rejected),
    }  # fmt: skip
    names = await store.query(
        "SELECT argMax(name_zh, version) FROM orgs WHERE kind = 'provider' AND org_id = {p:String} "
        "GROUP BY org_id", {"p": provider},
    )  # fmt: skip
    return {
        "provider_id": provider, "provider_name": names[0][0] if names else provider,
        "kind": kind, "kind_zh": REPORT_KINDS[kind][0], "label": label,
        "from": first.isoformat(), "to": last.isoformat(),
        "generated_at": (now or datetime.now(timezone.utc)).astimezone(CST).isoformat(timespec="seconds"),
        "summary": summary, "sla_results": _jsonable(sla) if sla else None,
        "sla_note": "" if sla else "SLA 可用率等指标尚未提供（待 SLA 模块）/ availability and SLA figures not yet available",
        "resources": _jsonable(resources), "incidents": _jsonable(incidents), "recommendations": _jsonable(recs),
        "rejected_inputs": _jsonable(rejected),
    }  # fmt: skip


REPORT_TABLES = (
    ("resources", "资源利用率与监测数据质量", "utilization and telemetry quality",
     ("resource_id", "name", "unit_id", "state", "days_in_service", "completeness_pct", "late_pct", "cpu_mean", "cpu_p95",
      "mem_mean", "mem_p95", "storage_mean", "storage_p95", "band")),
    ("incidents", "故障与 SLA", "incidents and SLA",
     ("severity", "opened", "drills", "resolved", "response_min", "restore_min", "response_breaches", "restore_breaches")),
    ("recommendations", "调整建议及处理结果", "recommendations and their fate", ("direction", "status", "recommendations")),
    ("rejected_inputs", "被拒收的数据", "rejected inputs", ("reason", "rejected")),
)  # fmt: skip
#: Chinese column headings of the printable report (the English key stays in CSV/XLSX/JSON)
COLUMN_ZH = {
    "resource_id": "资源编号", "name": "名称", "unit_id": "使用单位", "state": "状态", "days_in_service": "在服务天数",
    "completeness_pct": "完整率 %", "late_pct": "迟到率 %", "cpu_mean": "CPU 均值 %", "cpu_p95": "CPU p95 %",
    "mem_mean": "内存均值 %", "mem_p95": "内存 p95 %", "storage_mean": "存储均值 %", "storage_p95": "存储 p95 %",
    "band": "区间", "severity": "级别", "opened": "故障数", "drills": "演练", "resolved": "已恢复",
    "response_min": "响应（分钟）", "restore_min": "恢复（分钟）", "response_breaches": "响应超时",
    "restore_breaches": "恢复超时", "direction": "方向", "status": "状态", "recommendations": "建议数",
    "reason": "原因", "rejected": "条数",
}  # fmt: skip
SUMMARY_LABELS = (
    ("resources", "资源数"), ("resource_days", "在服务资源·天"), ("completeness_pct", "监测数据完整率 %"),
    ("low", "利用率偏低资源（p95 < 20 %）"), ("high", "利用率偏高资源（p95 > 80 %）"), ("incidents", "故障数（不含演练）"),
    ("drills", "演练数"), ("breaches", "SLA 超时次数"), ("recommendations", "调整建议数"),
    ("recommendations_open", "未办结建议数"), ("rejected_inputs", "被拒收数据条数"),
)  # fmt: skip


def report_html(doc: dict[str, Any], inline_css: bool = False) -> str:
    """A printable HTML page (Chinese, with the period and the generation time); every value escaped.

    Served pages link the stylesheet (the CSP forbids inline style); files carry it inline."""
    esc = html.escape

    def cell(v: Any) -> str:
        cls = ' class="n"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
        text = f"{v:.1f}" if isinstance(v, float) else "" if v is None else str(v)  # no Float32 noise on paper
        return f"<td{cls}>{esc(text)}</td>"

    title = f"{doc.get('provider_name') or doc['provider_id']} 云服务运维{doc['kind_zh']}（{doc['label']}）"
    style = (f"<style>{REPORT_CSS}</style>" if inline_css
             else '<link rel="stylesheet" href="/api/v1/reports/report.css">')  # fmt: skip
    meta = (f'<p class="meta">报告期 {esc(doc["from"])} 至 {esc(doc["to"])}（北京时间）· 生成时间 {esc(doc["generated_at"])} '
            f'<span class="en">Provider {esc(doc["kind"])} report, {esc(doc["from"])} – {esc(doc["to"])}</span></p>')
    out = [f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{esc(title)}</title>',
           f"{style}</head><body>", f"<h1>{esc(title)}</h1>", meta,
           '<h2>概要 <span class="en">summary</span></h2><table>']  # fmt: skip
    out += [f"<tr><th>{esc(zh)}</th>{cell(doc['summary'][k])}</tr>" for k, zh in SUMMARY_LABELS]
    out.append("</table>")
    sla = doc["sla_results"]
    out.append('<h2>服务质量（SLA）<span class="en">service quality</span></h2>')
    if sla:
        out.append("<table>" + "".join(f"<tr><th>{esc(k)}</th>{cell(sla[k])}</tr>" for k in SLA_FIGURES) + "</table>")
    else:
        out.append(f"<p>{esc(doc['sla_note'])}</p>")
    for key, zh, en, cols in REPORT_TABLES:
        out.append(f'<h2>{esc(zh)} <span class="en">{esc(en)}</span></h2><table><tr>')
        out += [f"<th>{esc(COLUMN_ZH.get(c, c))}</th>" for c in cols]
        out.append("</tr>")
        out += ["<tr>" + "".join(cell(r.get(c)) for c in cols) + "</tr>" for r in doc[key]]
        if not doc[key]:
            out.append(f'<tr><td colspan="{len(cols)}">无 / none</td></tr>')
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def report_csv(doc: dict[str, Any]) -> str:
    """One CSV: a header block, the summary, then each table (first column: section)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["section", "key", "value"])
    for k in ("provider_id", "kind", "from", "to", "generated_at"):
        w.writerow(["report", k, doc[k]])
    for k, zh in SUMMARY_LABELS:
        w.writerow(["summary", k, "" if doc["summary"][k] is None else doc["summary"][k]])
    for key, _, _, cols in REPORT_TABLES:
        w.writerow([])
        w.writerow([key, *cols])
        for r in doc[key]:
            w.writerow([key, *("" if r.get(c) is None else r.get(c) for c in cols)])
    return "\ufeff" + buf.getvalue()


def report_xlsx(doc: dict[str, Any]) -> bytes:
    """An XLSX workbook: 概要 (report header and summary) and one sheet per table."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "概要 Summary"
    ws.append([f"{doc['provider_id']} 云服务运维{doc['kind_zh']}（{doc['label']}）"])
    for k in ("provider_id", "kind", "from", "to", "generated_at"):
        ws.append([k, doc[k]])
    ws.append([])
    for k, zh in SUMMARY_LABELS:
        ws.append([zh, doc["summary"][k], k])
    for key, zh, _, cols in REPORT_TABLES:
        sheet = wb.create_sheet(zh[:31])
        sheet.append(list(cols))
        for r in doc[key]:
            sheet.append([r.get(c) for c in cols])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


@require("bureau", "finance", "provider")
async def get_provider_report(request: Request) -> Response:
    """A provider's monthly / quarterly / annual report (§26) as HTML, JSON, CSV or XLSX."""
    q = request.query_params
    provider = _provider_param(request, q.get("provider", ""))
    if isinstance(provider, JSONResponse):
        return provider
    kind = q.get("kind", "monthly")
    if kind not in REPORT_KINDS:
        return _bad("kind", "kind 仅支持 monthly、quarterly、annual", "kind must be monthly, quarterly or annual")
    fmt = q.get("format") or ("html" if "text/html" in request.headers.get("accept", "") else _format(request))
    if fmt not in ("html", "json", "csv", "xlsx"):
        return _bad("format", "format 仅支持 html、json、csv、xlsx", "format must be html, json, csv or xlsx")
    try:
        first, last, label = report_period(kind, q.get("period", ""))
    except fees.PriceError as exc:
        return _bad("period", exc.zh, exc.en)
    doc = await provider_report(_store(request), provider, kind, first, last, label)
    await _audit(request, "report_view", provider, f"{kind} {first}..{last} format={fmt}")
    name = f"report-{provider}-{kind}-{first}"
    if fmt == "html":
        return HTMLResponse(report_html(doc))
    if fmt == "csv":
        return Response(report_csv(doc), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{name}.csv"'})  # fmt: skip
    if fmt == "xlsx":
        return Response(report_xlsx(doc), media_type=XLSX_TYPE,
                        headers={"content-disposition": f'attachment; filename="{name}.xlsx"'})  # fmt: skip
    return JSONResponse(doc)


@require()
async def report_css(request: Request) -> Response:
    """The report page's print style (served here: the CSP allows no inline style)."""
    return Response(REPORT_CSS, media_type="text/css")


async def write_reports(settings: Any, kind: str, period: str, providers: list[str] | None, out_dir: Path,
                        formats: list[str] | None = None, stream: Any = None) -> int:  # fmt: skip
    """Write provider reports to files (for ``opscenter report``), with a progress bar on stderr."""
    import sys

    from opscenter import store as store_mod

    stream = stream or sys.stderr
    first, last, label = report_period(kind, period)
    client = store_mod.connect(settings)
    store_mod.migrate(client, settings)  # a database from an older version gets the new tables
    async_store = AsyncStore(client)
    try:
        if not providers:
            rows = await async_store.query("SELECT DISTINCT provider_id FROM inventory ORDER BY provider_id")
            providers = [r[0] for r in rows]
        out_dir.mkdir(parents=True, exist_ok=True)
        for i, provider in enumerate(providers):
            done = int(30 * i / max(len(providers), 1))
            stream.write(f"\r[{'#' * done}{'.' * (30 - done)}] {i}/{len(providers)} {provider:<20}")
            stream.flush()
            doc = await provider_report(async_store, provider, kind, first, last, label)
            base = out_dir / f"report-{provider}-{kind}-{first}"
            for fmt in formats or ["html", "csv", "xlsx"]:
                if fmt == "html":
                    base.with_suffix(".html").write_text(report_html(doc, inline_css=True), encoding="utf-8")
                elif fmt == "csv":
                    base.with_suffix(".csv").write_text(report_csv(doc), encoding="utf-8")
                elif fmt == "xlsx":
                    base.with_suffix(".xlsx").write_bytes(report_xlsx(doc))
                else:
                    base.with_suffix(".json").write_bytes(orjson.dumps(doc))
        stream.write(f"\r[{'#' * 30}] {len(providers)}/{len(providers)} {'':<20}\n")
    finally:
        async_store.close()
    return 0


def routes() -> list[BaseRoute]:
    scheme()  # validate deduction.yaml at start: a bad file names its line and field here
    return [
        Route("/api/v1/prices", list_prices, methods=["GET"]),
        Route("/api/v1/prices", create_price, methods=["POST"]),
        Route("/api/v1/judgements", list_judgements, methods=["GET"]),
        Route("/api/v1/judgements", create_judgement, methods=["POST"]),
        Route("/api/v1/judgements/{judgement_id}", withdraw_judgement, methods=["DELETE"]),
        Route("/api/v1/sla-results", put_sla_results, methods=["POST"]),
        Route("/api/v1/assessments", get_assessment, methods=["GET"]),
        Route("/api/v1/reports/provider", get_provider_report, methods=["GET"]),
        Route("/api/v1/reports/report.css", report_css, methods=["GET"]),
    ]
