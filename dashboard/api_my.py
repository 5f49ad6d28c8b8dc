"""The caller's own pages: ``/my`` (SLA and utilization of a provider, unit or district) and its API.

``GET /api/v1/my/utilization?window=1h|24h|7d`` lists the resources inside the caller's scope
with their live value (the live feed's latest map), their window figures and bands (Redis, kept
by the utilization domain) and a summary. The page reads it together with ``GET /api/v1/sla``
(providers only: SLA figures are the providers'; see docs/architecture.md, "Wall screen").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dashboard.auth import require
from dashboard.http import error
from opscenter.inventory import SUPERVISED_STATES
from streams.bands import METRICS, WINDOWS
from streams.utilization import BANDS_KEY, FIGURES_KEY

STATIC = Path(__file__).parent / "static"
MAX_ROWS = 500  # the busiest first; the totals count every resource
STALE_MS = 120_000  # as on the wall: reported within the last two minutes
#: who has a page of its own (the city-wide roles have the wall, the console and the reports)
MY_ROLES = ("provider", "unit", "district")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _peak(row: dict[str, Any]) -> float:
    f = row.get("figures") or {}
    return max((float((f.get(m) or {}).get("p95", -1.0)) for m in METRICS), default=-1.0)


@require(*MY_ROLES, page=True)
async def my_page(request: Request) -> Response:
    """The logged-in provider's, unit's or district's own SLA and utilization page."""
    return FileResponse(STATIC / "my.html")


@require("bureau", *MY_ROLES)
async def my_utilization(request: Request) -> Response:
    """GET /api/v1/my/utilization?window=1h|24h|7d — the caller's resources, busiest first."""
    window = request.query_params.get("window", "24h")
    if window not in WINDOWS:
        return error(400, "bad_parameter", "窗口参数错误", f"window is one of {', '.join(WINDOWS)}")
    p = request.state.principal
    app = request.app
    services, hub = app.state.services, app.state.hub
    mine = [r for r in services.registry.all()
            if r.state in SUPERVISED_STATES and p.sees(r.provider_id, r.unit_id, r.district_id)]  # fmt: skip
    ids = [r.resource_id for r in mine]
    figures: list[Any] = []
    bands: list[Any] = []
    if ids:
        redis = services.redis
        figures = await redis.hmget(FIGURES_KEY + window, ids)
        bands = await redis.hmget(BANDS_KEY + window, [f"{rid}|{m}" for rid in ids for m in METRICS])
    now_ms = int(time.time() * 1000)
    names = hub.names
    rows = []
    summary = {"resources": len(mine), "reporting": 0, "high": 0, "low": 0, "normal": 0, "no_data": 0}
    for i, res in enumerate(mine):
        live = hub.latest.get(res.resource_id)
        fresh = live is not None and now_ms - live[3] <= STALE_MS
        summary["reporting"] += int(fresh)
        b = {m: _text(raw).split("|")[0] for m, raw in zip(METRICS, bands[i * len(METRICS):(i + 1) * len(METRICS)])
             if raw is not None}  # fmt: skip
        worst = "high" if "high" in b.values() else "low" if b and set(b.values()) == {"low"} else \
            "normal" if b else "no_data"  # fmt: skip
        summary[worst] += 1
        rows.append({
            "resource_id": res.resource_id, "name": res.name, "provider_id": res.provider_id,
            "provider_name": names.get(res.provider_id, res.provider_id), "unit_id": res.unit_id,
            "unit_name": names.get(res.unit_id, res.unit_id), "district_id": res.district_id,
            "district_name": names.get(res.district_id, res.district_id),
            "spec": {"vcpu": res.vcpu, "mem_gb": res.mem_gb, "storage_gb": res.storage_gb},
            "live": {"cpu": live[0], "mem": live[1], "storage": live[2], "ts_ms": live[3], "fresh": fresh}
            if live is not None else None,
            "figures": orjson.loads(figures[i]) if figures and figures[i] else None, "bands": b, "band": worst,
        })  # fmt: skip
    rows.sort(key=lambda r: (-_peak(r), r["resource_id"]))
    scope_name = names.get(p.scope, p.scope) if p.scope else "全市"
    return JSONResponse({
        "scope": {"role": p.role, "id": p.scope, "name": scope_name}, "window": window, "summary": summary,
        "total": len(rows), "rows": rows[:MAX_ROWS],
    })  # fmt: skip


def routes() -> list[BaseRoute]:
    return [
        Route("/my", my_page, methods=["GET"]),
        Route("/api/v1/my/utilization", my_utilization, methods=["GET"]),
    ]
