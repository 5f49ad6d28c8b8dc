"""GET /api/v1/quality: telemetry quality (§17) per provider and resource, and per resource-day (§34).

``?provider=&from=YYYY-MM-DD&to=YYYY-MM-DD[&resource=]``: Asia/Shanghai calendar days, both
inclusive (like the fee assessment); default: this month up to today. Completeness, lateness
p50 / p95 and the invalid-sample rate per provider and per resource; with ``resource`` also one
row per day with the "under supervision" flag, computed exactly as the fee assessment decides
"not under supervision" (same rollups, same interval, same threshold: the deduction scheme's
``supervision_threshold_pct``), so the two never disagree. The bureau, finance and auditors see
every provider; a provider only its own. Definitions: docs/telemetry-quality.md.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import sql
from dashboard.api_billing import scheme, today_cst
from dashboard.auth import require
from dashboard.http import error

READERS = ("bureau", "finance", "auditor", "provider")
MAX_SPAN_DAYS = 1100
_COMMON = ("samples", "expected", "counted", "completeness_pct", "late", "lateness_p50_s", "lateness_p95_s",
           "lateness_max_s", "accepted", "invalid", "invalid_rate_pct", "in_service_s")  # fmt: skip
_PERIOD = ("billing_days", "supervised_days", "complete_billing_days", "complete_supervised_days")


def _num(v: Any, digits: int) -> Any:
    return None if v is None else round(float(v), digits)


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in _COMMON}
    out["samples"], out["accepted"], out["invalid"] = int(row["samples"]), int(row["accepted"]), int(row["invalid"])
    out["expected"], out["counted"] = _num(row["expected"], 2), _num(row["counted"], 2)
    for k in ("completeness_pct", "invalid_rate_pct"):
        out[k] = _num(row[k], 2)
    for k in ("lateness_p50_s", "lateness_p95_s", "lateness_max_s"):
        out[k] = _num(row[k], 3)
    return out


def _provider_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {"provider_id": row["provider_id"], "resources": int(row["resources"]), **_figures(row),
            "invalid_by_reason": dict(row["invalid_by_reason"]), **{k: int(row[k]) for k in _PERIOD}}  # fmt: skip


def _resource_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {"resource_id": row["resource_id"], "provider_id": row["provider_id"], "name": row["name"],
            "unit_id": row["unit_id"], "district_id": row["district_id"], "interval_s": int(row["interval_s"]),
            **_figures(row), **{k: int(row[k]) for k in _PERIOD}}  # fmt: skip


def _day_doc(row: dict[str, Any]) -> dict[str, Any]:
    flag = row["under_supervision"]
    return {"day": row["day"], **_figures(row),
            "supervision_completeness_pct": _num(row["supervision_completeness_pct"], 2),
            "billing_day": bool(row["billing_day"]), "under_supervision": None if flag is None else bool(flag),
            "day_complete": bool(row["day_complete"])}  # fmt: skip


async def get_quality(request: Request) -> Response:
    """Telemetry quality of a period (see the module docstring)."""
    principal = request.state.principal
    services = request.app.state.services
    q = request.query_params
    provider, resource = q.get("provider", ""), q.get("resource", "")
    if principal.role == "provider":
        if provider and provider != principal.scope:
            return error(403, "foreign_provider", "无权查看其他云服务商的数据",
                         f"token of {principal.scope!r} cannot read {provider!r}")  # fmt: skip
        provider = principal.scope
    if resource:
        res = services.registry.get(resource)
        # another provider's resource is not found, not forbidden: its existence is not disclosed
        if res is None or (principal.role == "provider" and res.provider_id != principal.scope):
            return error(404, "not_found", "资源不存在", f"no resource {resource!r}")
        if provider and res.provider_id != provider:
            return error(400, "bad_parameter", "资源不属于该云服务商",
                         f"resource {resource!r} does not belong to provider {provider!r}")  # fmt: skip
    today = today_cst()
    try:
        first = date.fromisoformat(q.get("from", today.replace(day=1).isoformat()))
        last = date.fromisoformat(q.get("to", today.isoformat()))
    except ValueError:
        return error(400, "bad_parameter", "日期格式错误，应为 YYYY-MM-DD",
                     "from and to are calendar days YYYY-MM-DD (Asia/Shanghai)")  # fmt: skip
    if last < first or (last - first).days >= MAX_SPAN_DAYS:
        return error(400, "bad_range", "时间范围错误", f"need from ≤ to and at most {MAX_SPAN_DAYS} days")
    sch = scheme()
    now_ms = int(time.time() * 1000)
    params = {"provider": provider, "resource": resource, "from": first, "to": last, "now_ms": now_ms,
              "threshold": float(sch.supervision_threshold_pct) / 100.0, "days": 1 if resource else 0}  # fmt: skip
    rows = await services.store.query_dicts(sql.report("quality_summary"), params)
    doc: dict[str, Any] = {
        "provider": provider or None, "resource": resource or None, "from": first.isoformat(), "to": last.isoformat(),
        "as_of": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(),
        "supervision_threshold_pct": str(sch.supervision_threshold_pct),
        "threshold_source": sch.source.rsplit("/", 1)[-1],
        "resources": [_resource_doc(r) for r in rows if r["level"] == "resource"],
    }  # fmt: skip
    if resource:
        doc["days"] = [_day_doc(r) for r in rows if r["level"] == "day"]
    else:
        doc["providers"] = [_provider_doc(r) for r in rows if r["level"] == "provider"]
    return JSONResponse(doc)


def routes() -> list[BaseRoute]:
    """The telemetry-quality route of the web app."""
    return [Route("/api/v1/quality", require(*READERS)(get_quality), methods=["GET"])]
