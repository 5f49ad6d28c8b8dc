"""Login throttling against the real Valkey and chDB: per username, per address, shared, audited."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from dashboard.app import build_app
from dashboard.throttle import MAX_PER_IP, MAX_PER_USER, WINDOW_S, LoginThrottle
from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings

PASSWORD = "duty-password-1"


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[tuple[Services, Starlette]]:
    await create_topics(settings)
    services = await open_services(settings)
    app = build_app(services)
    await app.state.users.put("duty", "值班员", "bureau", "", password=PASSWORD)
    await app.state.users.put("haiyun", "海韵云运维", "provider", "p-haiyun", password="haiyun-password-1")
    await app.state.tokens.add("tok-auditor", "auditor", "auditor", "")
    async with app.router.lifespan_context(app):
        yield services, app
    await services.aclose()


def client(app: Starlette, ip: str = "10.0.0.1") -> httpx.AsyncClient:
    """A browser at ``ip`` (the address the throttle counts)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url="http://test")


async def login(c: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    page = await c.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    return await c.post("/login", data={"username": username, "password": password, "csrf": csrf, "next": "/wall"})


def failed(r: httpx.Response) -> bool:
    return r.status_code == 303 and "failed=1" in r.headers["location"]


def refused(r: httpx.Response) -> bool:
    return r.status_code == 429


async def test_five_failures_then_429_even_with_the_right_password(env) -> None:  # type: ignore[no-untyped-def]
    _, app = env
    async with client(app) as c:
        for _ in range(MAX_PER_USER):
            assert failed(await login(c, "duty", "guess"))
        r = await login(c, "duty", PASSWORD)  # the right password no longer helps: nothing is checked
        assert refused(r)
        assert 0 < int(r.headers["retry-after"]) <= WINDOW_S
        assert "登录失败次数过多" in r.text and "Too many failed logins" in r.text
        assert "oc_session" not in r.headers.get("set-cookie", "")
        assert 'name="csrf"' in r.text  # the page still works: a fresh form for later
    # the username is locked from every address; other users at the same address are not
    async with client(app, "10.0.0.2") as other:
        assert refused(await login(other, "Duty ", PASSWORD))  # names are counted case- and space-blind
    async with client(app) as c:
        r = await login(c, "haiyun", "haiyun-password-1")
        assert r.status_code == 303 and r.headers["location"] == "/wall"

    # audited: five failures, then the refusal with its reason and address
    async with client(app) as c:
        audit = (await c.get("/api/v1/audit?action=login", headers={"authorization": "Bearer tok-auditor"})).json()
    mine = [(e["target"], e["ok"], e["detail"], e["ip"]) for e in reversed(audit["entries"]) if e["target"] != "haiyun"]
    assert [d for _, _, d, _ in mine[:MAX_PER_USER]] == ["failed"] * MAX_PER_USER
    target, ok, detail, ip = mine[MAX_PER_USER]
    assert (target, ok, ip) == ("duty", 0, "10.0.0.1") and detail.startswith("throttled by user; retry after")


async def test_a_success_resets_the_usernames_count(env) -> None:  # type: ignore[no-untyped-def]
    _, app = env
    async with client(app) as c:
        for _ in range(MAX_PER_USER - 1):
            assert failed(await login(c, "duty", "guess"))
        assert (await login(c, "duty", PASSWORD)).status_code == 303  # in: the count starts again
        for _ in range(MAX_PER_USER - 1):  # without the reset, the second of these would be refused
            assert failed(await login(c, "duty", "guess"))
        assert (await login(c, "duty", PASSWORD)).headers["location"] == "/wall"


async def test_one_address_guessing_many_names_is_refused(env) -> None:  # type: ignore[no-untyped-def]
    _, app = env
    async with client(app, "10.9.9.9") as c:
        for i in range(MAX_PER_IP):
            assert failed(await login(c, f"user{i}", "guess"))
        assert refused(await login(c, "duty", PASSWORD))
    async with client(app, "10.9.9.10") as c:  # the same user from elsewhere is fine
        assert (await login(c, "duty", PASSWORD)).headers["location"] == "/wall"


async def test_web_processes_share_the_count_through_redis(env, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """Two web apps, each with its own Redis connection: failures at one lock the name at the other."""
    services, app = env
    other = build_app(services)
    redis2 = Redis.from_url(settings.redis())
    other.state.login_throttle = LoginThrottle(redis2)
    try:
        async with client(app) as a, client(other) as b:
            for i in range(MAX_PER_USER):
                assert failed(await login(a if i % 2 else b, "duty", "guess"))
            assert refused(await login(a, "duty", PASSWORD)) and refused(await login(b, "duty", PASSWORD))
    finally:
        await redis2.aclose()


async def test_the_window_slides_and_retry_after_says_when(env) -> None:  # type: ignore[no-untyped-def]
    services, app = env
    now = [1_800_000_000.0]
    app.state.login_throttle = LoginThrottle(services.redis, clock=lambda: now[0])
    async with client(app) as c:
        for _ in range(MAX_PER_USER):
            assert failed(await login(c, "duty", "guess"))
            now[0] += 60  # one failure a minute
        # the first failure (at t0) leaves the window at t0 + 900 s; it is now t0 + 300 s
        r = await login(c, "duty", PASSWORD)
        assert refused(r) and int(r.headers["retry-after"]) == WINDOW_S - 300
        now[0] += WINDOW_S - 300 + 1
        r = await login(c, "duty", PASSWORD)
        assert r.status_code == 303 and r.headers["location"] == "/wall"


async def test_redis_down_lets_people_log_in(env) -> None:  # type: ignore[no-untyped-def]
    """Fail open: during a Redis outage a duty officer can still log in (and the miss is counted)."""
    from dashboard.throttle import throttle_errors
    from opscenter.embedded import free_port

    _, app = env
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.3)
    app.state.login_throttle = LoginThrottle(dead)
    before = throttle_errors._value.get()
    try:
        async with client(app) as c:
            for _ in range(MAX_PER_USER + 1):
                assert failed(await login(c, "duty", "guess"))
            assert (await login(c, "duty", PASSWORD)).headers["location"] == "/wall"
    finally:
        await dead.aclose()
    assert throttle_errors._value.get() > before
