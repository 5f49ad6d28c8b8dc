"""Helpers shared by the billing and report APIs: the deduction scheme, today, scope, formats, JSON values."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dashboard.auth import client_ip
from dashboard.http import bad
from opscenter import fees
from opscenter.datafile import load_yaml
from opscenter.store import AsyncStore

CST = timezone(timedelta(hours=8))
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"
_scheme: fees.DeductionScheme | None = None


def load_scheme(path: str | Path = fees.DEFAULT_SCHEME_FILE) -> fees.DeductionScheme:
    """Read and validate the deduction scheme (a bad file stops the start, naming file, line, field)."""
    return fees.parse_scheme(load_yaml(path))


def scheme() -> fees.DeductionScheme:
    """The deduction scheme of this process (read once)."""
    global _scheme
    if _scheme is None:
        _scheme = load_scheme()
    return _scheme


def today_cst(now: datetime | None = None) -> date:
    """Today's calendar day in Asia/Shanghai."""
    return (now or datetime.now(timezone.utc)).astimezone(CST).date()


def store_of(request: Request) -> AsyncStore:
    return request.app.state.services.store


async def audit(request: Request, action: str, target: str, detail: str, ok: bool = True) -> None:
    """One audit-log entry for the caller of ``request`` (R11)."""
    p = request.state.principal
    await request.app.state.audit.record(p.name, p.role, action, target, detail, client_ip(request), ok)


def jsonable(v: Any) -> Any:
    """Decimals as strings, dates and times as ISO text (naive times are UTC), recursively."""
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


def scoped_param(request: Request, value: str, role: str, name: str, zh: str, en: str) -> str | JSONResponse:
    """The organisation a caller may ask about: a caller of ``role`` its own (another: 403 with zh / en); any
    other caller the one it names in ``name`` (required)."""
    p = request.state.principal
    if p.role == role:
        if not p.scope or (value and value != p.scope):  # a scoped caller without a scope sees nothing
            return bad("forbidden", zh, en, 403)
        return p.scope
    if not value:
        return bad("schema", f"缺少 {name} 参数", f"{name} is required")
    return value


def provider_param(request: Request, value: str) -> str | JSONResponse:
    """The provider a caller may ask about: its own for a provider, any for the bureau and finance."""
    return scoped_param(request, value, "provider", "provider", "无权查看其他云服务商的数据", "a provider sees only its own data")


def output_format(request: Request, allowed: tuple[str, ...]) -> str | JSONResponse:
    """``format=`` or else the Accept header (HTML only where allowed), default JSON; 400 if not allowed."""
    fmt = request.query_params.get("format", "")
    if not fmt:
        accept = request.headers.get("accept", "")
        fmt = ("html" if "html" in allowed and "text/html" in accept else "xlsx" if XLSX_TYPE in accept
               else "csv" if "text/csv" in accept else "json")  # fmt: skip
    if fmt not in allowed:
        names = "、".join(allowed)
        return bad("format", f"format 仅支持 {names}", f"format must be one of {', '.join(allowed)}")
    return fmt


def provider_and_format(request: Request, allowed: tuple[str, ...]) -> tuple[str, str] | JSONResponse:
    """(provider, format) of a provider-scoped download, or the 400 / 403 answer."""
    provider = provider_param(request, request.query_params.get("provider", ""))
    if isinstance(provider, JSONResponse):
        return provider
    fmt = output_format(request, allowed)
    return fmt if isinstance(fmt, JSONResponse) else (provider, fmt)


def download(body: str | bytes, fmt: str, name: str) -> Response:
    """A CSV or XLSX answer saved by browsers as ``name.<fmt>``."""
    media = CSV_TYPE if fmt == "csv" else XLSX_TYPE
    return Response(body, media_type=media, headers={"content-disposition": f'attachment; filename="{name}.{fmt}"'})


def period_note(first: date, last: date, as_of: date, effective: date | None) -> dict[str, Any]:
    """``as_of`` / ``period_to_effective`` of an output and, when the period reaches beyond today, why."""
    doc: dict[str, Any] = {"as_of": as_of.isoformat(),
                           "period_to_effective": effective.isoformat() if effective else None,
                           "period_truncated": effective != last}  # fmt: skip
    if effective is None:
        doc["period_note"] = f"报告期尚未开始（今天为 {as_of}），不计任何天数"
        doc["period_note_en"] = f"the period has not begun (today is {as_of}): no day is counted"
    elif effective != last:
        doc["period_note"] = f"报告期尚未结束：统计截至今天 {effective}（北京时间），此后的日期不计费，也不列为未纳入监管"
        doc["period_note_en"] = (f"the period is not over: counted up to today, {effective} (Asia/Shanghai); later "
                                 "days are neither billed nor listed as not under supervision")  # fmt: skip
    else:
        doc["period_note"] = doc["period_note_en"] = ""
    return doc


def day_params(first: date, last: date, now: datetime) -> dict[str, Any]:
    """Bound parameters of a report query for [first, last] cut at today (Asia/Shanghai).

    ``to`` is the effective last day (the day before ``from`` when the period has not begun: the
    queries then count nothing); ``today`` and ``today_s`` (seconds of today that have passed) let
    the queries expect only the samples of the elapsed part of today.
    """
    today = today_cst(now)
    effective = fees.effective_to(first, last, today)
    local = now.astimezone(CST)
    elapsed_s = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    return {"from": first, "to": effective or first - timedelta(days=1), "today": today,
            "today_s": max(float(elapsed_s), 1.0)}  # fmt: skip
