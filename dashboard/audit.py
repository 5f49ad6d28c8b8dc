"""R11 audit log: who did what, when, from where; append-only; readable by bureau and auditor."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dashboard.auth import client_ip, require
from opscenter.store import AsyncStore

COLUMNS = ["ts", "actor", "role", "action", "target", "detail", "ip", "ok"]


class AuditLog:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store

    async def record(self, actor: str, role: str, action: str, target: str, detail: str, ip: str, ok: bool) -> None:
        """Append one entry (retried until stored: an action is not audited "later, maybe")."""
        await self.store.insert_retrying(
            "audit_log",
            [[int(time.time() * 1000)], [actor], [role], [action], [target], [detail[:1000]], [ip], [int(ok)]],
            COLUMNS,
        )


def audited(action: str, target_param: str | None = None) -> Any:
    """Record a successful write (status < 300) in the audit log (R11)."""

    def wrap(handler: Any) -> Any:
        async def run(request: Request) -> Response:
            resp = await handler(request)
            if resp.status_code < 300:
                p = request.state.principal
                target = request.path_params.get(target_param, "") if target_param else ""
                await request.app.state.audit.record(p.name, p.role, action, target, request.method,
                                                     client_ip(request), True)  # fmt: skip
            return resp

        run.__name__ = handler.__name__
        return run

    return wrap


@require("bureau", "auditor")
async def list_audit(request: Request) -> Response:
    q = request.query_params
    try:
        limit = min(int(q.get("limit", 200)), 5000)
        from_ms = int(q.get("from_ms", 0))
    except ValueError:
        return JSONResponse({"error": "bad_parameter", "message": "参数错误", "message_en": "limit and from_ms are integers"},
                            status_code=400)  # fmt: skip
    rows = await request.app.state.services.store.query_dicts(
        "SELECT toUnixTimestamp64Milli(ts) AS ts_ms, actor, role, action, target, detail, ip, ok FROM audit_log "
        "WHERE ts >= fromUnixTimestamp64Milli({f:Int64}) "
        "AND ({actor:String} = '' OR actor = {actor:String}) AND ({action:String} = '' OR action = {action:String}) "
        "ORDER BY ts DESC LIMIT {n:UInt32}",
        {"f": from_ms, "actor": q.get("actor", ""), "action": q.get("action", ""), "n": limit},
    )
    return JSONResponse({"entries": rows})


def routes() -> list[Route]:
    return [Route("/api/v1/audit", list_audit, methods=["GET"])]
