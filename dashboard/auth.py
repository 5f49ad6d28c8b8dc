"""Who is calling: bearer tokens, signed session cookies, kiosk devices; login, logout, guards.

- Machines send ``Authorization: Bearer <token>`` (stored as SHA-256 digests).
- People log in at ``/login`` and get a signed, expiring session cookie (``oc_session``,
  HttpOnly, SameSite=Lax); every unsafe request made with a session cookie must carry the
  session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``).
- A wall-screen device opens ``/kiosk?token=<kiosk token>`` once; it gets a cookie that never
  expires but is checked against the token on every request, so revoking the token ends it.
- Failed logins are counted per username and per address (dashboard/throttle.py); past the
  limit the login page answers 429 with ``Retry-After`` until old failures leave the window.
"""

from __future__ import annotations

import html
import secrets
import time
from dataclasses import asdict
from typing import Any, Awaitable, Callable
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dashboard.throttle import LoginThrottle
from opscenter.auth import Principal, verify_password
from opscenter.tokens import digest

SESSION_COOKIE = "oc_session"
SESSION_MAX_AGE_S = 12 * 3600
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _serializer(app: Any) -> URLSafeTimedSerializer:
    secret = app.state.services.settings.secret_key.get_secret_value()
    return URLSafeTimedSerializer(secret, salt="opscenter-session")


class AuthMiddleware:
    """Resolves the caller of every HTTP request and websocket into ``scope['state']['principal']``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            conn = HTTPConnection(scope)
            principal, session = await resolve(conn)
            scope.setdefault("state", {})
            scope["state"]["principal"] = principal
            scope["state"]["session"] = session
        await self.app(scope, receive, send)


async def resolve(conn: HTTPConnection) -> tuple[Principal | None, dict[str, Any] | None]:
    """The principal behind a bearer token or a session/kiosk cookie, and the session payload."""
    tokens = conn.app.state.tokens
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        p = await tokens.lookup(auth[7:].strip())
        return (Principal(p.name, p.role, p.scope, "token") if p else None), None
    raw = conn.cookies.get(SESSION_COOKIE)
    if not raw:
        return None, None
    serializer = _serializer(conn.app)
    try:
        data = serializer.loads(raw)  # signature
        if "k" not in data:  # people's sessions expire; a kiosk's lives as long as its token
            data = serializer.loads(raw, max_age=SESSION_MAX_AGE_S)
    except (BadSignature, SignatureExpired):
        return None, None
    if "k" in data:  # kiosk: valid as long as its token is
        p = await tokens.lookup_digest(data["k"])
        if p is None or p.role != "kiosk":
            return None, None
        return Principal(p.name, "kiosk", "", "kiosk"), data
    return Principal(data["u"], data["r"], data.get("s", ""), "user"), data


def client_ip(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else ""


def principal_of(conn: HTTPConnection) -> Principal | None:
    return conn.scope.get("state", {}).get("principal")


def _json_error(status: int, code: str, zh: str, en: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": zh, "message_en": en}, status_code=status)


def require(*roles: str, page: bool = False) -> Callable:
    """Decorator: the caller must be one of ``roles`` (none given: any authenticated caller).

    Unsafe requests made with a session cookie must carry the session's CSRF token.
    Pages redirect an anonymous caller to /login; APIs answer 401, and 403 for a wrong role.
    """

    def wrap(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            p = principal_of(request)
            if p is None:
                if page:
                    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
                return _json_error(401, "unauthenticated", "请先登录或提供访问令牌", "log in or send a bearer token")
            if roles and p.role not in roles:
                return _json_error(403, "forbidden", "无权访问", f"role {p.role!r} may not do this")
            if request.method in UNSAFE and p.kind in ("user", "kiosk"):
                session = request.scope["state"].get("session") or {}
                sent = request.headers.get("x-csrf-token")
                if sent is None and request.headers.get("content-type", "").startswith(
                    ("application/x-www-form-urlencoded", "multipart/form-data")
                ):
                    sent = (await request.form()).get("csrf")
                if not sent or not secrets.compare_digest(str(sent), session.get("c", "")):
                    return _json_error(403, "csrf", "请求校验失败，请刷新页面", "missing or wrong CSRF token")
            request.state.principal = p
            return await handler(request)

        guarded.__name__ = handler.__name__
        guarded.roles = roles  # type: ignore[attr-defined]  # read by the access-matrix test
        return guarded

    return wrap


# -- pages and routes ---------------------------------------------------------------------

_LOGIN = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<title>登录 · 威海市市级政务云 运行监控指挥中心</title><link rel="stylesheet" href="/static/login.css"></head>
<body><form method="post" action="/login"><h1>威海市市级政务云 运行监控指挥中心</h1>
<p class="sub">Weihai Government Cloud Operations Control Center</p>{error}
<label>用户名 Username<input name="username" autocomplete="username" required autofocus></label>
<label>密码 Password<input name="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">
<button type="submit">登录 Log in</button></form></body></html>"""

LOGIN_CSRF_COOKIE = "oc_login_csrf"


def _safe_next(value: str) -> str:
    return value if value.startswith("/") and not value.startswith("//") else "/wall"


def _login_form(next_path: str, error: str = "", status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The login page with a fresh CSRF token (also in a cookie); ``error`` is trusted HTML."""
    csrf = secrets.token_urlsafe(24)
    body = _LOGIN.format(error=error, csrf=csrf, next=html.escape(_safe_next(next_path)))
    resp = HTMLResponse(body, status_code=status_code, headers=headers)
    resp.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict", max_age=600)
    return resp


async def login_page(request: Request) -> Response:
    error = ""
    if request.query_params.get("failed"):
        error = '<p class="error">用户名或密码错误 / wrong username or password</p>'
    return _login_form(request.query_params.get("next", "/wall"), error)


def throttle_of(app: Any) -> LoginThrottle:
    """The app's login throttle (made on first use: Redis is the process's shared connection)."""
    t = getattr(app.state, "login_throttle", None)
    if t is None:
        t = app.state.login_throttle = LoginThrottle(app.state.services.redis)
    return t


async def login(request: Request) -> Response:
    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    next_path = _safe_next(str(form.get("next", "/wall")))
    cookie_csrf = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie_csrf or not secrets.compare_digest(cookie_csrf, str(form.get("csrf", ""))):
        return _json_error(403, "csrf", "请求校验失败，请刷新登录页", "missing or wrong CSRF token")
    throttle, ip = throttle_of(request.app), client_ip(request)
    refusal = await throttle.check(username, ip)
    if refusal is not None:  # refused before the password is even looked at: guessing stops here
        await request.app.state.audit.record(username or "-", "", "login", username,
                                             f"throttled by {refusal.by}; retry after {refusal.retry_after_s} s",
                                             ip, False)  # fmt: skip
        minutes = -(-refusal.retry_after_s // 60)
        error = (f'<p class="error" id="throttled">登录失败次数过多，请 {minutes} 分钟后再试<br>'
                 f"Too many failed logins: try again in {minutes} min</p>")  # fmt: skip
        return _login_form(next_path, error, 429, {"Retry-After": str(refusal.retry_after_s)})
    users = request.app.state.users
    user = await users.get(username)
    ok = user is not None and not user["disabled"] and verify_password(user["password_hash"], password)
    await request.app.state.audit.record(username or "-", user["role"] if user else "", "login",
                                         username, "" if ok else "failed", ip, ok)  # fmt: skip
    if not ok:
        await throttle.failed(username, ip)
        return RedirectResponse(f"/login?failed=1&next={quote(next_path)}", status_code=303)
    await throttle.succeeded(username)
    payload = {"u": user["username"], "r": user["role"], "s": user["scope"], "c": secrets.token_urlsafe(24)}  # type: ignore[index]
    resp = RedirectResponse(next_path, status_code=303)
    resp.set_cookie(SESSION_COOKIE, _serializer(request.app).dumps(payload), max_age=SESSION_MAX_AGE_S,
                    httponly=True, samesite="lax", secure=request.url.scheme == "https")  # fmt: skip
    resp.delete_cookie(LOGIN_CSRF_COOKIE)
    return resp


async def kiosk(request: Request) -> Response:
    """A wall-screen device presents its kiosk token once and stays logged in until it is revoked."""
    token = request.query_params.get("token", "")
    p = await request.app.state.tokens.lookup(token) if token else None
    await request.app.state.audit.record(p.name if p else "-", "kiosk", "kiosk_login", "", "" if p else "refused",
                                         client_ip(request), p is not None and p.role == "kiosk")  # fmt: skip
    if p is None or p.role != "kiosk":
        return _json_error(401, "unauthenticated", "大屏令牌无效或已吊销", "invalid or revoked kiosk token")
    resp = RedirectResponse("/wall", status_code=303)
    value = _serializer(request.app).dumps({"k": digest(token), "c": secrets.token_urlsafe(24)})
    resp.set_cookie(SESSION_COOKIE, value, max_age=10 * 365 * 86400, httponly=True, samesite="lax",
                    secure=request.url.scheme == "https")  # fmt: skip
    return resp


@require()
async def logout(request: Request) -> Response:
    p = request.state.principal
    await request.app.state.audit.record(p.name, p.role, "logout", p.name, "", client_ip(request), True)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


@require()
async def me(request: Request) -> Response:
    p = request.state.principal
    session = request.scope["state"].get("session") or {}
    return JSONResponse({**asdict(p), "csrf": session.get("c"), "now_ms": int(time.time() * 1000)})


def routes() -> list[Route]:
    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/kiosk", kiosk, methods=["GET"]),
        Route("/api/v1/me", me, methods=["GET"]),
    ]
