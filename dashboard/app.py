"""The web app: health, metrics, HTTP ingest, status API and the status page."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timezone
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from dashboard.api_admin import routes as admin_routes
from dashboard.api_my import routes as my_routes
from dashboard.audit import AuditLog
from dashboard.audit import routes as audit_routes
from dashboard.auth import AuthMiddleware, principal_of, require
from dashboard.auth import routes as auth_routes
from dashboard.feed import LiveHub
from dashboard.ingest import error, post_telemetry
from dashboard.panels import Panels
from opscenter import metrics
from opscenter.tokens import TokenStore
from opscenter.users import DEMO_USERS, UserStore

STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response


def bearer(role: str) -> Callable:
    """The route needs a caller of ``role`` (kept for the domain APIs; see dashboard.auth.require)."""
    return require(role)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _check(coro: Awaitable[Any], timeout_s: float = 3.0) -> dict[str, Any]:
    try:
        ok = await asyncio.wait_for(coro, timeout_s)
        return {"ok": bool(ok)}
    except Exception as exc:  # noqa: BLE001 - readiness reports every failure
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}


async def readyz(request: Request) -> Response:
    s = request.app.state.services

    async def broker() -> bool:
        await s.producer.client.fetch_all_metadata()
        return True

    checks = dict(
        zip(
            ("broker", "redis", "clickhouse"),
            await asyncio.gather(_check(broker()), _check(s.redis.ping()), _check(s.store.ping())),
        )
    )
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


async def metrics_endpoint(request: Request) -> Response:
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def pipeline_status(request: Request) -> Response:
    """Pipeline figures for the status page: rows stored, registry size, dead letters by reason."""
    s = request.app.state.services
    samples, minutes, dead = await asyncio.gather(
        s.store.query("SELECT count(), max(ts) FROM samples"),
        s.store.query("SELECT count(), max(minute) FROM rollup_1m"),
        s.store.query("SELECT reason, count() FROM deadletters FINAL GROUP BY reason ORDER BY reason"),
    )
    return JSONResponse(
        {
            "resources": len(s.registry),
            "samples": samples[0][0],
            "newest_sample_ms": int(samples[0][1].replace(tzinfo=timezone.utc).timestamp() * 1000)
            if samples[0][0]
            else None,
            "rollup_minutes": minutes[0][0],
            "deadletters": {r: n for r, n in dead},
        }
    )


status = require()(pipeline_status)


@require()
async def resource_rollups(request: Request) -> Response:
    """GET /api/v1/resources/{id}/rollups?from_ms=&to_ms= — 1-minute rollups of one resource."""
    import time

    import sql

    s = request.app.state.services
    rid = request.path_params["resource_id"]
    res = s.registry.get(rid)
    if res is None or not request.state.principal.sees(res.provider_id, res.unit_id, res.district_id):
        # another scope's resource is "not found", not "forbidden": its existence is not disclosed
        return error(404, "not_found", "资源不存在", f"resource {rid!r} is not registered")
    try:
        now_ms = int(time.time() * 1000)
        to_ms = int(request.query_params.get("to_ms", now_ms))
        from_ms = int(request.query_params.get("from_ms", to_ms - 3_600_000))
    except ValueError:
        return error(400, "bad_parameter", "参数错误", "from_ms and to_ms are epoch milliseconds")
    if from_ms >= to_ms or to_ms - from_ms > 31 * 86_400_000:
        return error(400, "bad_range", "时间范围错误", "need from_ms < to_ms and at most 31 days")
    rows = await s.store.query_dicts(
        sql.report("resource_rollup_1m"), {"resource_id": rid, "from_ms": from_ms, "to_ms": to_ms}
    )
    return JSONResponse({"resource_id": rid, "resolution": "1m", "rows": rows})


@require(page=True)
async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def org_names(services: Any) -> tuple[dict[str, str], list[str], list[str]]:
    """Display names of providers, districts and units (Chinese), and the district and provider ids,
    from ``orgs``."""
    rows = await services.store.query(
        "SELECT org_id, argMax(name_zh, version), argMax(kind, version) FROM orgs GROUP BY org_id"
    )
    return ({org_id: name for org_id, name, _ in rows}, sorted(o for o, _, kind in rows if kind == "district"),
            sorted(o for o, _, kind in rows if kind == "provider"))  # fmt: skip


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Start the live feed hub of this web process; stop it on shutdown."""
    services = app.state.services
    users_file = services.settings.users_file or (DEMO_USERS if services.settings.demo else None)
    if users_file:
        await app.state.users.seed(Path(users_file))
    names, districts, providers = await org_names(services)
    hub = LiveHub(services.redis, services.registry, names, districts, providers=providers,
                  panels=Panels.of(services))  # fmt: skip
    await hub.start()
    app.state.hub = hub
    try:
        yield
    finally:
        await hub.stop()


#: who may open the console: the readers of the alert API; only the bureau acts (the page hides the
#: buttons for the others, and the API refuses them)
CONSOLE_ROLES = ("bureau", "auditor", "provider", "unit", "district")


@require(*CONSOLE_ROLES, page=True)
async def console(request: Request) -> Response:
    """The on-call console: acknowledge, resolve, silence (bureau duty officers); read-only, scoped
    to their own alerts, for providers, units, districts and auditors."""
    return FileResponse(STATIC / "console.html")


@require(page=True)
async def wall(request: Request) -> Response:
    return FileResponse(STATIC / "wall.html")


async def live_ws(websocket: WebSocket) -> None:
    if principal_of(websocket) is None:
        await websocket.accept()  # accept, then close with a code the page understands: go to /login
        await websocket.close(code=4401)
        return
    await websocket.app.state.hub.serve(websocket, principal_of(websocket))


def build_app(services: Any) -> Starlette:
    """The Starlette app over one process's :class:`~opscenter.services.Services`."""
    routes = [
        Route("/", index),
        Route("/wall", wall),
        Route("/console", console),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        WebSocketRoute("/ws/live", live_ws),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route("/api/v1/status", status),
        Route("/api/v1/resources/{resource_id}/rollups", resource_rollups),
        Route("/api/v1/telemetry", require("provider")(post_telemetry), methods=["POST"]),
        *auth_routes(),
        *audit_routes(),
        *admin_routes(),
        *my_routes(),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    from dashboard.api import ROUTES

    for domain_routes in ROUTES:
        routes[-1:-1] = domain_routes()  # before the static mount
    app = Starlette(
        routes=routes, middleware=[Middleware(SecurityHeaders), Middleware(AuthMiddleware)], lifespan=lifespan
    )
    app.state.services = services
    app.state.tokens = TokenStore(services.store)
    app.state.users = UserStore(services.store)
    app.state.audit = AuditLog(services.store)
    return app


def build_worker_app(services: Any) -> Starlette:
    """Health and metrics of a stand-alone worker (``opscenter worker``)."""
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/api/v1/status", pipeline_status),  # worker port: internal, not exposed by the proxy
        ]
    )
    app.state.services = services
    return app
