"""Utilization API (§29–§31): windows of a resource / unit / district, out-of-band resources,
recommendations and their approval, declared peak and trough periods.

Every handler works for a caller's :class:`Scope`. Until the access-control issue lands the
caller is always the bureau (which sees everything); the scope is already threaded through,
so that issue only has to replace :func:`caller_scope`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dashboard.audit import audited
from dashboard.auth import require
from dashboard.ingest import error, read_body
from opscenter.inventory import Resource
from opscenter.wire import TOPIC_DECLARATIONS
from streams import declarations as decl
from streams.bands import METRICS, WINDOWS
from streams.rightsizing import STATUSES, DecisionError
from streams.utilization import AGG_KEY, BANDS_KEY, FIGURES_KEY, decide, load_recommendations, rec_doc

MAX_BODY_BYTES = 64 * 1024
OUT_OF_BAND_COLUMNS = ("resource_id", "name", "provider_id", "unit_id", "district_id", "metric", "window", "band",
                       "since", "value", "mean", "max", "p95")  # fmt: skip
REC_CSV_COLUMNS = ("rec_id", "resource_id", "provider_id", "unit_id", "district_id", "metric", "direction", "status",
                   "current_size", "target_size", "size_unit", "p95_pct", "target_pct", "proposed_at", "decided_at",
                   "decided_by", "reason", "applied_at", "applied_event_id")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Scope:
    """Who is asking: a role and the organisation it is limited to (empty for the bureau)."""

    role: str
    org_id: str = ""
    actor: str = ""

    def sees(self, res: Resource) -> bool:
        """Whether the caller may see this resource."""
        if self.role in ("bureau", "auditor", "finance"):
            return True
        field = {"unit": "unit_id", "district": "district_id", "provider": "provider_id"}.get(self.role)
        return field is not None and getattr(res, field) == self.org_id


def caller_scope(request: Request) -> Scope:
    """The caller's scope, from the principal the auth middleware resolved (dashboard/auth.py)."""
    p = request.state.principal
    return Scope(p.role, p.scope, p.name)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...], filename: str) -> Response:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    # a BOM, so that spreadsheet programs read the Chinese names as UTF-8
    return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip


def _window(request: Request, default: str | None = "24h") -> str | None | Response:
    w = request.query_params.get("window", default)
    if w is not None and w not in WINDOWS:
        return error(400, "bad_parameter", "窗口参数错误", f"window is one of {', '.join(WINDOWS)}")
    return w


# ------------------------------------------------------------------------------ utilization


async def resource_utilization(services: Any, scope: Scope, resource_id: str, window: str) -> dict[str, Any] | None:
    """Figures and bands of one resource over a window, or None if the caller cannot see it."""
    res = services.registry.get(resource_id)
    if res is None or not scope.sees(res):
        return None
    raw = await services.redis.hget(FIGURES_KEY + window, resource_id)
    bands = await services.redis.hmget(BANDS_KEY + window, [f"{resource_id}|{m}" for m in METRICS])
    return {
        "resource_id": resource_id, "name": res.name, "provider_id": res.provider_id, "unit_id": res.unit_id,
        "district_id": res.district_id, "window": window, "spec": {"vcpu": res.vcpu, "mem_gb": res.mem_gb,
        "storage_gb": res.storage_gb}, "figures": orjson.loads(raw) if raw else None,
        "bands": {m: _text(b).split("|")[0] for m, b in zip(METRICS, bands) if b is not None},
    }  # fmt: skip


async def group_utilization(
    services: Any, scope: Scope, level: str, group_id: str, window: str
) -> dict[str, Any] | None:
    """Capacity-weighted aggregate of a unit or district, or None if unknown or out of scope."""
    members = [r for r in services.registry.all() if getattr(r, f"{level}_id") == group_id]
    if not members or not all(scope.sees(r) for r in members):
        return None
    raw = await services.redis.hget(AGG_KEY + window, f"{level}:{group_id}")
    return {"level": level, "id": group_id, "window": window, "resources": len(members),
            "aggregate": orjson.loads(raw) if raw else None}  # fmt: skip


async def get_resource(request: Request) -> Response:
    """GET /api/v1/utilization/resources/{resource_id}?window=1h|24h|7d"""
    window = _window(request)
    if isinstance(window, Response):
        return window
    doc = await resource_utilization(request.app.state.services, caller_scope(request),
                                     request.path_params["resource_id"], window or "24h")  # fmt: skip
    if doc is None:
        return error(404, "not_found", "资源不存在", "no such resource")
    return JSONResponse(doc)


def _group_handler(level: str) -> Any:
    async def handler(request: Request) -> Response:
        window = _window(request)
        if isinstance(window, Response):
            return window
        doc = await group_utilization(request.app.state.services, caller_scope(request), level,
                                      request.path_params["group_id"], window or "24h")  # fmt: skip
        if doc is None:
            return error(404, "not_found", "单位或区县不存在", f"no such {level}")
        return JSONResponse(doc)

    handler.__doc__ = f"GET /api/v1/utilization/{level}s/{{id}}?window=1h|24h|7d"
    return handler


async def out_of_band(services: Any, scope: Scope, filters: dict[str, str]) -> list[dict[str, Any]]:
    """Resources currently in ``low`` or ``high``, one row per (resource, metric, window)."""
    rows: list[dict[str, Any]] = []
    windows = [filters["window"]] if filters.get("window") else list(WINDOWS)
    for window in windows:
        hits = []
        for k, v in (await services.redis.hgetall(BANDS_KEY + window)).items():
            rid, metric = _text(k).split("|")
            band, since, shown = _text(v).split("|")
            if band == "normal" or filters.get("metric") and metric != filters["metric"]:
                continue
            if filters.get("band") and band != filters["band"]:
                continue
            res = services.registry.get(rid)
            if res is None or not scope.sees(res):
                continue
            if any(filters.get(f) and getattr(res, f"{f}_id") != filters[f] for f in ("district", "unit", "provider")):
                continue
            hits.append((res, metric, band, int(since), float(shown)))
        figures = await services.redis.hmget(FIGURES_KEY + window, [h[0].resource_id for h in hits]) if hits else []
        for (res, metric, band, since_ms, value), raw in zip(hits, figures):
            f = orjson.loads(raw).get(metric, {}) if raw else {}
            rows.append({"resource_id": res.resource_id, "name": res.name, "provider_id": res.provider_id,
                         "unit_id": res.unit_id, "district_id": res.district_id, "metric": metric, "window": window,
                         "band": band, "since": datetime.fromtimestamp(since_ms / 1000, timezone.utc).isoformat(),
                         "value": value, "mean": f.get("mean"), "max": f.get("max"), "p95": f.get("p95")})  # fmt: skip
    rows.sort(key=lambda r: (WINDOWS.index(r["window"]), r["metric"], r["band"], -r["value"], r["resource_id"]))
    return rows


async def get_out_of_band(request: Request) -> Response:
    """GET /api/v1/utilization/out-of-band?metric=&window=&band=&district=&unit=&provider=&format=csv"""
    q = request.query_params
    filters = {k: q.get(k, "") for k in ("metric", "window", "band", "district", "unit", "provider")}
    if filters["metric"] and filters["metric"] not in METRICS:
        return error(400, "bad_parameter", "指标参数错误", f"metric is one of {', '.join(METRICS)}")
    if filters["window"] and filters["window"] not in WINDOWS:
        return error(400, "bad_parameter", "窗口参数错误", f"window is one of {', '.join(WINDOWS)}")
    if filters["band"] and filters["band"] not in ("low", "high"):
        return error(400, "bad_parameter", "区间参数错误", "band is low or high")
    rows = await out_of_band(request.app.state.services, caller_scope(request), filters)
    if q.get("format") == "csv":
        return _csv(rows, OUT_OF_BAND_COLUMNS, "out-of-band.csv")
    return JSONResponse({"count": len(rows), "rows": rows})


# ------------------------------------------------------------------------------ recommendations


async def get_recommendations(request: Request) -> Response:
    """GET /api/v1/recommendations?status=&metric=&direction=&resource=&unit=&district=&provider=&format=csv"""
    q = request.query_params
    scope = caller_scope(request)
    filters = {"status": q.get("status", ""), "metric": q.get("metric", ""), "direction": q.get("direction", ""),
               "resource_id": q.get("resource", ""), "unit_id": q.get("unit", ""),
               "district_id": q.get("district", ""), "provider_id": q.get("provider", "")}  # fmt: skip
    if filters["status"] and filters["status"] not in STATUSES:
        return error(400, "bad_parameter", "状态参数错误", f"status is one of {', '.join(STATUSES)}")
    if scope.role in ("unit", "district", "provider"):
        filters[f"{scope.role}_id"] = scope.org_id  # a scoped caller sees its own only
    recs = await load_recommendations(request.app.state.services.store, **filters)
    docs = [rec_doc(r) for r in recs]
    if q.get("format") == "csv":
        return _csv(docs, REC_CSV_COLUMNS, "recommendations.csv")
    return JSONResponse({"count": len(docs), "rows": docs})


def _decision(action: str) -> Any:
    async def handler(request: Request) -> Response:
        scope = caller_scope(request)
        if scope.role != "bureau":
            return error(403, "forbidden", "仅市大数据局可审批", "only the bureau decides recommendations")
        body = await read_body(request, MAX_BODY_BYTES)
        if body is None:
            return error(413, "too_large", "请求体过大", f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            doc = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            return error(400, "unparseable", "请求体不是有效的 JSON", f"body is not valid JSON: {exc}")
        reason = doc.get("reason", "") if isinstance(doc, dict) else ""
        if not isinstance(reason, str):
            return error(400, "schema", "理由须为文本", "reason must be a string")
        try:
            rec = await decide(request.app.state.services, request.path_params["rec_id"], action, scope.actor,
                               reason, datetime.now(timezone.utc))  # fmt: skip
        except DecisionError as exc:
            status = {"not_found": 404, "reason_required": 400, "busy": 409}.get(exc.code, 409)
            return error(status, exc.code, exc.zh, exc.en)
        return JSONResponse(rec_doc(rec))

    handler.__doc__ = f"POST /api/v1/recommendations/{{rec_id}}/{action}  body {{\"reason\": …}}"
    return handler


# ------------------------------------------------------------------------------ declarations


async def post_declaration(request: Request) -> Response:
    """POST /api/v1/declarations: a unit declares a peak / trough period → declarations.v1 (202)."""
    services = request.app.state.services
    scope = caller_scope(request)
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        return error(413, "too_large", "请求体过大", f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return error(400, "unparseable", "请求体不是有效的 JSON", f"body is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return error(400, "schema", "申报格式错误", "the body must be a JSON object")
    if scope.role == "unit":
        claimed = doc.setdefault("unit_id", scope.org_id)
        if claimed != scope.org_id:
            return error(403, "foreign_unit", "不能为其他单位申报",
                         f"a caller of {scope.org_id!r} cannot declare for {claimed!r}")  # fmt: skip
    elif scope.role != "bureau":
        return error(403, "forbidden", "无权申报", f"a {scope.role!r} caller cannot declare periods")
    doc["type"] = decl.DECLARATION_TYPE
    doc["ts"] = datetime.now(timezone.utc).isoformat()
    doc["declared_by"] = scope.actor  # who declares comes from the caller, never from the body
    try:
        d = msgspec.convert(doc, decl.Declaration)
    except msgspec.ValidationError as exc:
        return error(400, "schema", "申报格式错误", f"declaration: {exc}")
    unit_of = lambda rid: (r.unit_id if (r := services.registry.get(rid)) is not None else None)  # noqa: E731
    try:
        try:
            decl.validate(d, unit_of)
        except decl.DeclarationError as exc:
            if exc.code != "unknown_resource":
                raise
            await services.lifecycle_reader.catch_up()  # then ask the registry again, whoever applied it
            decl.validate(d, unit_of)
    except decl.DeclarationError as exc:
        return error(403 if exc.code == "foreign_resource" else 400, exc.code, exc.zh, exc.en)
    await services.send(TOPIC_DECLARATIONS, d.declaration_id.encode(), msgspec.json.encode(d))
    return JSONResponse({"declaration_id": d.declaration_id, "status": "accepted"}, status_code=202)


async def get_declarations(request: Request) -> Response:
    """GET /api/v1/declarations?unit= — current declarations (a unit sees its own)."""
    from streams.utilization import load_declarations

    scope = caller_scope(request)
    unit = scope.org_id if scope.role == "unit" else request.query_params.get("unit", "")
    rows = [d for d in await load_declarations(request.app.state.services.store) if not unit or d.unit_id == unit]
    return Response(msgspec.json.encode({"count": len(rows), "rows": rows}), media_type="application/json")


def routes() -> list[BaseRoute]:
    see = require("bureau", "provider", "unit", "district")  # scoped inside the handlers
    bureau = require("bureau")
    return [
        Route("/api/v1/utilization/resources/{resource_id}", see(get_resource)),
        Route("/api/v1/utilization/units/{group_id}", see(_group_handler("unit"))),
        Route("/api/v1/utilization/districts/{group_id}", see(_group_handler("district"))),
        Route("/api/v1/utilization/out-of-band", see(get_out_of_band)),
        Route("/api/v1/recommendations", see(get_recommendations)),
        Route("/api/v1/recommendations/{rec_id}/approve", bureau(audited("recommendation_approve", "rec_id")(
            _decision("approve"))), methods=["POST"]),
        Route("/api/v1/recommendations/{rec_id}/reject", bureau(audited("recommendation_reject", "rec_id")(
            _decision("reject"))), methods=["POST"]),
        Route("/api/v1/declarations", require("unit", "bureau")(audited("declaration")(post_declaration)),
              methods=["POST"]),
        Route("/api/v1/declarations", require("bureau", "unit", "district")(get_declarations), methods=["GET"]),
    ]  # fmt: skip
