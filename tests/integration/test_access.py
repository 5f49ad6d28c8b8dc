"""Access control and audit against the real services: every route guarded, role × endpoint, scope."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import AsyncIterator

import httpx
import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from dashboard.app import build_app
from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import LifecycleEvent, Spec

#: routes anyone may call: infrastructure probes, the login flow, static assets
PUBLIC = {"/healthz", "/readyz", "/metrics", "/login", "/kiosk", "/favicon.ico", "/static"}
ROLE_SCOPES = {
    "bureau": "", "finance": "", "provider": "p1", "unit": "u1", "district": "d1", "auditor": "", "kiosk": "",
}  # fmt: skip


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient, dict[str, str]]]:
    await create_topics(settings)
    services = await open_services(settings)
    for rid, provider, unit, district in [("a1", "p1", "u1", "d1"), ("b1", "p2", "u2", "d2")]:
        services.registry.apply(LifecycleEvent(f"e-{rid}", rid, "delivered", datetime.now(timezone.utc), provider,
                                               unit, district, rid, Spec(4, 8, 100)))  # fmt: skip
    app = build_app(services)
    tokens = {}
    for role, scope in ROLE_SCOPES.items():
        tokens[role] = f"tok-{role}"
        await app.state.tokens.add(tokens[role], f"test {role}", role, scope)
    await app.state.users.put("duty", "值班员", "bureau", "", password="duty-password-1")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield services, client, tokens
    await services.aclose()


def _guarded(endpoint: object) -> bool:
    return hasattr(endpoint, "roles")


def test_every_route_is_public_by_design_or_guarded(settings: Settings) -> None:
    app = build_app(type("S", (), {"store": None, "settings": settings})())
    unguarded = []
    for r in app.routes:
        path = r.path
        if isinstance(r, Mount) or path in PUBLIC:
            continue
        if isinstance(r, WebSocketRoute):
            continue  # checked by test_websocket_needs_a_caller
        assert isinstance(r, Route)
        if not _guarded(r.endpoint):
            unguarded.append(path)
    assert unguarded == [], f"routes without a role check: {unguarded}"


# role → expected status per endpoint (GET unless stated)
MATRIX = {
    # pages (issue 6): anonymous viewers are sent to /login (303); the console is read-only and scoped for
    # all but the bureau; /my is a provider's, unit's or district's own page
    "/wall": {"anon": 303, "bureau": 200, "finance": 200, "provider": 200, "unit": 200, "district": 200,
              "auditor": 200, "kiosk": 200},
    "/console": {"anon": 303, "bureau": 200, "finance": 403, "provider": 200, "unit": 200, "district": 200,
                 "auditor": 200, "kiosk": 403},
    "/my": {"anon": 303, "bureau": 403, "finance": 403, "provider": 200, "unit": 200, "district": 200,
            "auditor": 403, "kiosk": 403},
    "/api/v1/my/utilization": {"anon": 401, "bureau": 200, "finance": 403, "provider": 200, "unit": 200,
                               "district": 200, "auditor": 403, "kiosk": 403},
    "/api/v1/status": {"anon": 401, "bureau": 200, "finance": 200, "provider": 200, "unit": 200, "district": 200,
                       "auditor": 200, "kiosk": 200},
    "/api/v1/audit": {"anon": 401, "bureau": 200, "finance": 403, "provider": 403, "unit": 403, "district": 403,
                      "auditor": 200, "kiosk": 403},
    "/api/v1/users": {"anon": 401, "bureau": 200, "finance": 403, "provider": 403, "unit": 403, "district": 403,
                      "auditor": 403, "kiosk": 403},
    "/api/v1/tokens": {"anon": 401, "bureau": 200, "finance": 403, "provider": 403, "unit": 403, "district": 403,
                       "auditor": 403, "kiosk": 403},
    "/api/v1/resources/a1/rollups": {"anon": 401, "bureau": 200, "finance": 200, "provider": 200, "unit": 200,
                                     "district": 200, "auditor": 200, "kiosk": 200},
    # another scope's resource is not found, not forbidden: its existence is not disclosed
    "/api/v1/resources/b1/rollups": {"anon": 401, "bureau": 200, "finance": 200, "provider": 404, "unit": 404,
                                     "district": 404, "auditor": 200, "kiosk": 200},
    # the annual evaluation of unit u1 (district d1): its own unit, its district, the bureau and auditors
    "/api/v1/reports/unit?unit=u1&year=2025": {"anon": 401, "bureau": 200, "finance": 403, "provider": 403,
                                               "unit": 200, "district": 200, "auditor": 200, "kiosk": 403},
    "/api/v1/reports/unit?unit=u2&year=2025": {"anon": 401, "bureau": 200, "finance": 403, "provider": 403,
                                               "unit": 403, "district": 403, "auditor": 200, "kiosk": 403},
    "POST /api/v1/telemetry": {"anon": 401, "bureau": 403, "finance": 403, "provider": 400, "unit": 403,
                               "district": 403, "auditor": 403, "kiosk": 403},
    # telemetry quality (§17): a provider sees only its own; another's resource is not disclosed
    "/api/v1/quality": {"anon": 401, "bureau": 200, "finance": 200, "provider": 200, "unit": 403, "district": 403,
                        "auditor": 200, "kiosk": 403},
    "/api/v1/quality?provider=p2": {"anon": 401, "bureau": 200, "finance": 200, "provider": 403, "unit": 403,
                                    "district": 403, "auditor": 200, "kiosk": 403},
    "/api/v1/quality?resource=b1": {"anon": 401, "bureau": 200, "finance": 200, "provider": 404, "unit": 403,
                                    "district": 403, "auditor": 200, "kiosk": 403},
    "POST /api/v1/tokens": {"anon": 401, "bureau": 400, "finance": 403, "provider": 403, "unit": 403,
                            "district": 403, "auditor": 403, "kiosk": 403},
    "/api/v1/sla": {"anon": 401, "bureau": 200, "finance": 403, "provider": 200, "unit": 403, "district": 403,
                    "auditor": 200, "kiosk": 403},
    # only a using unit rates (§33); "{}" is not a rating
    "POST /api/v1/ratings": {"anon": 401, "bureau": 403, "finance": 403, "provider": 403, "unit": 400,
                             "district": 403, "auditor": 403, "kiosk": 403},
}  # fmt: skip


@pytest.mark.parametrize("endpoint", list(MATRIX))
async def test_access_matrix(env, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    _, client, tokens = env
    method, _, path = endpoint.rpartition(" ")
    got = {}
    for who in MATRIX[endpoint]:
        headers = {} if who == "anon" else {"authorization": f"Bearer {tokens[who]}"}
        r = await client.request(method or "GET", path, headers=headers, content=b"{}" if method else None)
        got[who] = r.status_code
    assert got == MATRIX[endpoint]


async def test_pages_send_anonymous_viewers_to_login(env) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = env
    for page in ("/", "/wall", "/console", "/my"):
        r = await client.get(page)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


async def _login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    page = await client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    return await client.post("/login", data={"username": username, "password": password, "csrf": csrf, "next": "/wall"})


async def test_login_session_csrf_and_logout_are_audited(env) -> None:  # type: ignore[no-untyped-def]
    services, client, tokens = env
    r = await _login(client, "duty", "wrong-password")
    assert r.status_code == 303 and "failed=1" in r.headers["location"]
    r = await _login(client, "duty", "duty-password-1")
    assert r.status_code == 303 and r.headers["location"] == "/wall"
    assert "httponly" in r.headers["set-cookie"].lower()
    me = (await client.get("/api/v1/me")).json()
    assert (me["name"], me["role"], me["kind"]) == ("duty", "bureau", "user")
    # an unsafe request with the session cookie but without the CSRF token is refused
    r = await client.post("/api/v1/tokens", json={"name": "x", "role": "kiosk"})
    assert r.status_code == 403 and r.json()["error"] == "csrf"
    r = await client.post("/api/v1/tokens", json={"name": "wall-1", "role": "kiosk"},
                          headers={"x-csrf-token": me["csrf"]})  # fmt: skip
    assert r.status_code == 201
    r = await client.post("/logout", headers={"x-csrf-token": me["csrf"]})
    assert r.status_code == 303
    client.cookies.clear()
    assert (await client.get("/api/v1/me")).status_code == 401

    audit = (await client.get("/api/v1/audit", headers={"authorization": f"Bearer {tokens['auditor']}"})).json()
    actions = [(e["actor"], e["action"], e["ok"]) for e in reversed(audit["entries"])]
    assert actions == [("duty", "login", 0), ("duty", "login", 1), ("duty", "token_create", 1), ("duty", "logout", 1)]


async def test_kiosk_never_logs_out_until_revoked(env) -> None:  # type: ignore[no-untyped-def]
    _, client, tokens = env
    bureau = {"authorization": f"Bearer {tokens['bureau']}"}
    created = (await client.post("/api/v1/tokens", json={"name": "wall-2", "role": "kiosk"}, headers=bureau)).json()
    r = await client.get(f"/kiosk?token={created['token']}")
    assert r.status_code == 303 and r.headers["location"] == "/wall"
    assert "max-age=315360000" in r.headers["set-cookie"].lower()
    assert (await client.get("/wall")).status_code == 200
    assert (await client.get("/api/v1/users")).status_code == 403  # a kiosk only watches
    r = await client.delete(f"/api/v1/tokens/{created['token_sha256']}", headers=bureau)
    assert r.status_code == 200
    client._transport.app.state.tokens._cache.clear()  # type: ignore[attr-defined]  # the cache lives ≤ 10 s
    r = await client.get("/wall")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


async def test_bad_kiosk_token_and_wrong_roles_are_refused(env) -> None:  # type: ignore[no-untyped-def]
    _, client, tokens = env
    assert (await client.get("/kiosk?token=nope")).status_code == 401
    assert (await client.get(f"/kiosk?token={tokens['provider']}")).status_code == 401
    r = await client.post("/api/v1/users", json={"username": "x", "role": "provider", "password": "longenough"},
                          headers={"authorization": f"Bearer {tokens['bureau']}"})  # fmt: skip
    assert r.status_code == 400 and "scope" in r.json()["message_en"]


async def test_websocket_needs_a_caller(env) -> None:  # type: ignore[no-untyped-def]
    """The live feed refuses anonymous sockets (4401) and serves a frame to a token holder."""
    import websockets

    from opscenter.embedded import free_port
    from opscenter.runner import _serve, _uvicorn

    services, client, tokens = env
    port = free_port()
    server = _uvicorn(client._transport.app, "127.0.0.1", port)  # type: ignore[attr-defined]
    task = await _serve(server)
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/live") as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 4401
        headers = {"Authorization": f"Bearer {tokens['kiosk']}"}
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/live", additional_headers=headers) as ws:
            import orjson

            frame = orjson.loads(await ws.recv())
            assert frame["type"] == "frame" and frame["seq"] >= 1 and "districts" in frame
    finally:
        server.should_exit = True
        await task


async def test_live_feed_is_limited_to_the_viewers_scope(env) -> None:  # type: ignore[no-untyped-def]
    """A provider's screen shows its own resources and districts only; the bureau sees the city."""
    import time

    import orjson
    import websockets

    from opscenter.embedded import free_port
    from opscenter.runner import _serve, _uvicorn
    from streams.live import CHANNEL

    services, client, tokens = env
    port = free_port()
    server = _uvicorn(client._transport.app, "127.0.0.1", port)  # type: ignore[attr-defined]
    task = await _serve(server)
    now = int(time.time() * 1000)
    notice = {"type": "telemetry", "ts_ms": now, "seq": 1,
              "resources": [["a1", 95.0, 50.0, 40.0, now], ["b1", 97.0, 60.0, 30.0, now]]}  # fmt: skip

    async def frame_with_data(token: str) -> dict:
        url = f"ws://127.0.0.1:{port}/ws/live"
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await services.redis.publish(CHANNEL, orjson.dumps(notice))
            while True:
                f = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                if f["hot"]:
                    return f

    import asyncio

    try:
        mine = await frame_with_data(tokens["provider"])
        assert [h["id"] for h in mine["hot"]] == ["a1"]
        assert [d["id"] for d in mine["districts"]] == ["d1"] and mine["totals"]["resources"] == 1
        assert mine["scope"] == "p1"
        city = await frame_with_data(tokens["bureau"])
        assert {h["id"] for h in city["hot"]} == {"a1", "b1"}
        assert {d["id"] for d in city["districts"]} >= {"d1", "d2"}
    finally:
        server.should_exit = True
        await task


async def test_my_utilization_is_limited_to_the_callers_scope(env) -> None:  # type: ignore[no-untyped-def]
    """/my's API: a provider, unit or district gets its own resources only; the bureau the city."""
    _, client, tokens = env

    async def ids(who: str) -> list[str]:
        r = await client.get("/api/v1/my/utilization?window=24h", headers={"authorization": f"Bearer {tokens[who]}"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["summary"]["resources"] == doc["total"] == len(doc["rows"])
        return sorted(row["resource_id"] for row in doc["rows"])

    assert await ids("provider") == ["a1"] and await ids("unit") == ["a1"] and await ids("district") == ["a1"]
    assert await ids("bureau") == ["a1", "b1"]
    r = await client.get("/api/v1/my/utilization?window=1y", headers={"authorization": f"Bearer {tokens['unit']}"})
    assert r.status_code == 400 and r.json()["error"] == "bad_parameter" and r.json()["message"]
