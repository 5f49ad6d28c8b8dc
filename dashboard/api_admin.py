"""Admin API (bureau): users and machine/kiosk tokens; every change is audited."""

from __future__ import annotations


from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dashboard.http import bad as _bad
from dashboard.http import json_object as _body
from dashboard.auth import client_ip, require
from opscenter.auth import ROLES, validate_user
from opscenter.tokens import digest, new_token


@require("bureau")
async def list_users(request: Request) -> Response:
    users = await request.app.state.users.list()
    return JSONResponse({"users": [{**u, "updated": str(u["updated"])} for u in users]})


@require("bureau")
async def put_user(request: Request) -> Response:
    doc = await _body(request)
    if doc is None:
        return _bad("unparseable", "请求体不是 JSON 对象", "body is not a JSON object")
    username = str(doc.get("username", "")).strip()
    if not username:
        return _bad("schema", "缺少用户名", "username is required")
    try:
        await request.app.state.users.put(
            username, str(doc.get("display_name") or username), str(doc.get("role", "")), str(doc.get("scope") or ""),
            password=doc.get("password"), disabled=bool(doc.get("disabled", False)),
        )  # fmt: skip
    except ValueError as exc:
        return _bad("invalid_user", "用户信息无效", str(exc))
    p = request.state.principal
    await request.app.state.audit.record(p.name, p.role, "user_put", username,
                                         f"role={doc.get('role')} scope={doc.get('scope') or ''}", client_ip(request), True)  # fmt: skip
    return JSONResponse({"username": username}, status_code=201)


@require("bureau")
async def list_tokens(request: Request) -> Response:
    rows = await request.app.state.tokens.list()
    return JSONResponse({"tokens": [{**r, "created": str(r["created"])} for r in rows]})


@require("bureau")
async def create_token(request: Request) -> Response:
    """A new machine or kiosk token; the token itself is shown once, only its digest is kept."""
    doc = await _body(request)
    if doc is None:
        return _bad("unparseable", "请求体不是 JSON 对象", "body is not a JSON object")
    name, role, scope = str(doc.get("name", "")), str(doc.get("role", "")), str(doc.get("scope") or "")
    if not name or role not in ROLES:
        return _bad("schema", "需要名称和有效角色", f"name and a role in {', '.join(ROLES)} are required")
    try:
        validate_user(role, scope)
    except ValueError as exc:
        return _bad("invalid_token", "令牌角色或范围无效", str(exc))
    token = new_token()
    await request.app.state.tokens.add(token, name, role, scope)
    p = request.state.principal
    await request.app.state.audit.record(p.name, p.role, "token_create", digest(token)[:12],
                                         f"name={name} role={role} scope={scope}", client_ip(request), True)  # fmt: skip
    return JSONResponse({"token": token, "token_sha256": digest(token), "name": name, "role": role, "scope": scope},
                        status_code=201)  # fmt: skip


@require("bureau")
async def revoke_token(request: Request) -> Response:
    h = request.path_params["token_sha256"]
    ok = await request.app.state.tokens.revoke(h)
    p = request.state.principal
    await request.app.state.audit.record(p.name, p.role, "token_revoke", h[:12], "", client_ip(request), ok)
    if not ok:
        return _bad("not_found", "令牌不存在", "no such token", 404)
    return JSONResponse({"revoked": h})


def routes() -> list[Route]:
    return [
        Route("/api/v1/users", list_users, methods=["GET"]),
        Route("/api/v1/users", put_user, methods=["POST"]),
        Route("/api/v1/tokens", list_tokens, methods=["GET"]),
        Route("/api/v1/tokens", create_token, methods=["POST"]),
        Route("/api/v1/tokens/{token_sha256}", revoke_token, methods=["DELETE"]),
    ]
