"""The wall screen in real headless Chromium against `opscenter up` (screenshots in test-artifacts/)."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import expect

from opscenter.wire import (
    TOPIC_INCIDENTS,
    TOPIC_LIFECYCLE,
    TOPIC_TELEMETRY,
    LifecycleEvent,
    Spec,
    json_encoder,
    shard_key,
)
from tests.e2e.conftest import Up
from tests.integration.helpers import telemetry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (scripts/ensure-browser.sh)"),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    u = Up(tmp_path_factory.mktemp("wall"), resources=60)
    u.start("--simulate")
    yield u
    u.kill()


@pytest.fixture
async def browser() -> AsyncIterator:  # type: ignore[type-arg]
    from playwright.async_api import async_playwright  # noqa: PLC0415

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def _page(browser, up: Up, width: int = 1920, height: int = 1080):  # type: ignore[no-untyped-def]
    page = await browser.new_page(viewport={"width": width, "height": height})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    await page.goto(f"{up.base}/kiosk?token=demo-kiosk")  # a wall-screen device: kiosk token, never logs out
    await page.goto(f"{up.base}/wall?rotate=0")
    await page.wait_for_selector(".tile .tile-value", timeout=15_000)
    return page


async def _produce(up: Up, messages: list[tuple[str, bytes, bytes]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=up.kafka, acks="all")
    await p.start()
    try:
        for topic, key, value in messages:
            await p.send_and_wait(topic, value, key=key)
    finally:
        await p.stop()


async def test_wall_renders_city_at_1080p_and_4k_without_scrollbars(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    for w, h in ((1920, 1080), (3840, 2160)):
        page = await _page(browser, up, w, h)
        await expect(page.locator(".tile")).to_have_count(8)
        # the simulator's telemetry has reached the screen: districts show figures, resources report
        await expect(page.locator(".tile.normal, .tile.high, .tile.low").first).to_be_visible(timeout=45_000)
        await expect(page.locator("#k-reporting")).not_to_have_text("0", timeout=10_000)
        assert (await page.locator("#hot li").count()) > 0
        names = await page.locator(".tile .tile-name").all_inner_texts()
        assert "环翠区" in names and "火炬高技术产业开发区" in names
        assert await page.evaluate("document.documentElement.scrollHeight <= innerHeight && "
                                   "document.documentElement.scrollWidth <= innerWidth")  # fmt: skip
        # readable across a room: the district figure is at least 5 % of the screen height
        size = await page.evaluate("parseFloat(getComputedStyle(document.querySelector('.tile-value')).fontSize)")
        assert size >= 0.05 * h
        await page.screenshot(path=str(ARTIFACTS / f"wall-{w}x{h}.png"))
        await page.close()


async def test_sample_through_broker_shows_within_two_seconds(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    page = await _page(browser, up)
    rid = "r-wall-hot"
    await _produce(up, [(TOPIC_LIFECYCLE, rid.encode(), json_encoder.encode(LifecycleEvent(
        "ev-wall-hot", rid, "delivered", datetime.now(timezone.utc), "p-haiyun", "u-gaj", "d-huancui",
        "大屏测试-热点主机", Spec(8, 16, 200), 15)))])  # fmt: skip
    t0 = time.monotonic()
    now_ms = int(time.time() * 1000)
    await _produce(up, [(TOPIC_TELEMETRY, shard_key("p-haiyun", rid),
                         telemetry("p-haiyun", "wall-hot-1", [(rid, now_ms, 100.0, 90.0, 50.0)]))])  # fmt: skip
    await page.wait_for_selector(f'#hot li[data-resource="{rid}"]', timeout=10_000)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, f"sample took {elapsed:.2f}s to reach the screen"
    assert "大屏测试-热点主机" in await page.locator(f'#hot li[data-resource="{rid}"]').inner_text()
    await page.close()


async def test_provider_text_is_shown_as_text(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    page = await _page(browser, up)
    rid = "r-wall-evil"
    now_ms = int(time.time() * 1000)
    await _produce(up, [
        (TOPIC_LIFECYCLE, rid.encode(), json_encoder.encode(LifecycleEvent(
            "ev-wall-evil", rid, "delivered", datetime.now(timezone.utc), "p-donghai", "u-gaj", "d-huancui", EVIL,
            Spec(4, 8, 100), 15))),
        (TOPIC_TELEMETRY, shard_key("p-donghai", rid),
         telemetry("p-donghai", "wall-evil-1", [(rid, now_ms, 100.0, 99.0, 50.0)])),
    ])  # fmt: skip
    row = page.locator(f'#hot li[data-resource="{rid}"]')
    await row.wait_for(timeout=10_000)
    assert EVIL in await row.inner_text()
    assert await page.locator("#hot img").count() == 0
    await page.wait_for_timeout(500)
    assert page.dialogs == []  # type: ignore[attr-defined]
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "wall-escaped-name.png"))
    await page.close()


async def test_english_switch_is_remembered(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    page = await _page(browser, up)
    assert await page.locator(".title").inner_text() == "威海市市级政务云 运行监控指挥中心"
    await page.click("#lang")
    assert await page.locator(".title").inner_text() == "Weihai Government Cloud Operations Control Center"
    await page.reload()
    await page.wait_for_selector(".tile")
    assert await page.locator(".title").inner_text() == "Weihai Government Cloud Operations Control Center"
    await page.close()


async def _login(browser, up: Up, username: str, next_path: str, width: int = 1920, height: int = 1080):  # type: ignore[no-untyped-def]
    """A person logs in through the form (demo password: demo-<username>) and lands on ``next_path``."""
    page = await browser.new_page(viewport={"width": width, "height": height})
    await page.goto(f"{up.base}/login?next={next_path}")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", f"demo-{username}")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{up.base}{next_path.split('?')[0]}**")
    return page


def _incident(eid: str, iid: str, type_: str, minutes_ago: float, provider: str, **kw):  # type: ignore[no-untyped-def]
    from opscenter.wire_incidents import IncidentEvent, encode

    ts = datetime.fromtimestamp(time.time() - minutes_ago * 60, timezone.utc)
    return (TOPIC_INCIDENTS, iid.encode(), encode(IncidentEvent(eid, iid, type_, ts, provider, **kw)))


async def _no_scrollbars(page) -> bool:  # type: ignore[no-untyped-def]
    return await page.evaluate("document.documentElement.scrollHeight <= innerHeight && "
                               "document.documentElement.scrollWidth <= innerWidth")  # fmt: skip


async def test_quality_view_fits_1080p_and_4k(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    """SLA gauges per provider, completeness per provider and pipeline health on one view, no scrollbars."""
    ARTIFACTS.mkdir(exist_ok=True)
    for w, h in ((1920, 1080), (3840, 2160)):
        page = await browser.new_page(viewport={"width": w, "height": h})
        await page.goto(f"{up.base}/kiosk?token=demo-kiosk")
        await page.goto(f"{up.base}/wall?rotate=0&view=quality")
        await expect(page.locator("#view-quality")).to_be_visible()
        await expect(page.locator(".sla-card")).to_have_count(3, timeout=15_000)  # the demo city's providers
        assert set(await page.locator(".sla-card .card-name").all_inner_texts()) == {"海韵云", "东海数智", "金桥云服务"}
        await expect(page.locator(".comp")).to_have_count(3)
        await expect(page.locator(".comp .comp-value").first).to_have_text(re.compile(r"^\d+(\.\d)?%$"))
        # every part of the pipeline is up: the panel says so in words, with three green lamps
        await expect(page.locator("#pipe-status")).to_have_text("链路正常", timeout=15_000)
        await expect(page.locator(".lamp.up")).to_have_count(3)
        await expect(page.locator("#p-rate")).not_to_have_text("–", timeout=15_000)
        assert await _no_scrollbars(page)
        # readable across a room: gauge figures and completeness figures ≥ 3 % of the screen height
        for sel in (".sla-card .ring b", ".comp .comp-value"):
            size = await page.evaluate(f"parseFloat(getComputedStyle(document.querySelector('{sel}')).fontSize)")
            assert size >= 0.03 * h, (sel, size)
        await page.screenshot(path=str(ARTIFACTS / f"wall-quality-{w}x{h}.png"))
        await page.close()


async def test_incidents_through_the_broker_move_the_providers_gauges(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    """A P1 left unanswered past its 15 min target and a P3 handled in time: 50 % responded in time,
    one open P1, one breach today — for that provider's card only."""
    page = await _page(browser, up)
    await page.goto(f"{up.base}/wall?rotate=0&view=quality")
    card = page.locator('.sla-card[data-provider="p-jinqiao"]')
    await expect(card).to_have_count(1, timeout=15_000)
    await _produce(up, [
        _incident("jq-1a", "inc-jq-1", "opened", 60, "p-jinqiao", severity="P1"),
        _incident("jq-2a", "inc-jq-2", "opened", 30, "p-jinqiao", severity="P3"),
        _incident("jq-2b", "inc-jq-2", "acknowledged", 20, "p-jinqiao"),
        _incident("jq-2c", "inc-jq-2", "resolved", 5, "p-jinqiao"),
    ])  # fmt: skip
    await expect(card.locator('.open-sev[data-sev="P1"] b')).to_have_text("1", timeout=5_000)  # live, from Redis
    await expect(card.locator(".gauge").nth(0).locator("b")).to_have_text("50%", timeout=15_000)
    await expect(card.locator(".gauge").nth(1).locator("b")).to_have_text("100%")
    await expect(card.locator(".gauge").nth(0)).to_have_class(re.compile(r"\bbad\b"))
    await expect(card.locator(".breaches b")).to_have_text("1", timeout=20_000)
    for other in ("p-haiyun", "p-donghai"):  # the other providers' cards did not take these
        assert "inc-jq" not in await page.locator(f'.sla-card[data-provider="{other}"]').inner_text()
    await page.screenshot(path=str(ARTIFACTS / "wall-quality-incidents.png"))
    await page.click("#lang")
    await expect(card.locator(".gauge-label").first).to_have_text("Responded in time")
    await page.click("#lang")
    await page.close()


async def test_a_providers_wall_console_and_page_show_only_its_own(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    """haiyun (provider p-haiyun) logs in: its wall has its own gauge only and no city pipeline, its
    console is read-only, and /my lists its own SLA figures and resources only."""
    rid = "r-my-donghai"
    await _produce(up, [
        (TOPIC_LIFECYCLE, rid.encode(), json_encoder.encode(LifecycleEvent(
            "ev-my-donghai", rid, "delivered", datetime.now(timezone.utc), "p-donghai", "u-gaj", "d-huancui",
            "东海-不应出现", Spec(4, 8, 100), 15))),
        _incident("hy-1a", "inc-hy-1", "opened", 40, "p-haiyun", severity="P2"),
        _incident("hy-1b", "inc-hy-1", "acknowledged", 35, "p-haiyun"),
        _incident("dh-1a", "inc-dh-1", "opened", 40, "p-donghai", severity="P4"),
    ])  # fmt: skip
    wall = await _login(browser, up, "haiyun", "/wall?rotate=0&view=quality")
    await expect(wall.locator(".sla-card")).to_have_count(1, timeout=15_000)
    assert await wall.locator(".sla-card").get_attribute("data-provider") == "p-haiyun"
    await expect(wall.locator(".comp")).to_have_count(1)
    assert await wall.locator(".comp").get_attribute("data-provider") == "p-haiyun"
    await expect(wall.locator("#view-quality")).to_have_class(re.compile(r"\bno-pipe\b"))
    await expect(wall.locator(".pipeline")).to_be_hidden()
    assert await _no_scrollbars(wall)
    await wall.screenshot(path=str(ARTIFACTS / "wall-quality-provider.png"))
    await expect(wall.locator("#my-link")).to_be_visible()

    await wall.goto(f"{up.base}/console")
    await expect(wall.locator("#read-only")).to_be_visible(timeout=10_000)
    await expect(wall.locator("#conn")).to_have_class("conn on", timeout=10_000)
    assert await wall.locator("button.ack").count() == 0

    await wall.goto(f"{up.base}/my")
    my = wall
    await expect(my.locator("#scope-name")).to_have_text("海韵云", timeout=10_000)
    await expect(my.locator('#sla-rows tr[data-provider="p-haiyun"][data-severity="P2"]')).to_have_count(1,
                                                                                                        timeout=20_000)
    sla_providers = {await r.get_attribute("data-provider") for r in await my.locator("#sla-rows tr").all()}
    assert sla_providers == {"p-haiyun"}
    rows = my.locator("#util-rows tr")
    await expect(rows.first).to_be_visible()
    owners = {await r.get_attribute("data-provider") for r in await rows.all()}
    assert owners == {"p-haiyun"}
    assert await rows.count() == int(await my.locator("#u-resources").inner_text())
    assert "东海-不应出现" not in await my.locator("main").inner_text()
    await my.screenshot(path=str(ARTIFACTS / "my-provider.png"), full_page=True)
    await my.close()


async def test_login_page_slows_down_a_password_guesser(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    page = await browser.new_page()
    for _ in range(5):
        await page.goto(f"{up.base}/login?next=/wall")
        await page.fill("input[name=username]", "gaj")
        await page.fill("input[name=password]", "wrong-guess")
        await page.click("button[type=submit]")
        await expect(page.locator(".error")).to_contain_text("用户名或密码错误")
    await page.fill("input[name=username]", "gaj")
    await page.fill("input[name=password]", "demo-gaj")
    async with page.expect_response(f"{up.base}/login") as resp:
        await page.click("button[type=submit]")
    assert (await resp.value).status == 429
    await expect(page.locator("#throttled")).to_contain_text("登录失败次数过多")
    await expect(page.locator("#throttled")).to_contain_text("Too many failed logins")
    await page.screenshot(path=str(ARTIFACTS / "login-throttled.png"))
    await page.close()


async def test_screen_recovers_after_server_restart(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    page = await _page(browser, up)
    assert await page.locator("#conn").get_attribute("class") == "conn on"
    seq_before = await page.locator("#seq").inner_text()
    assert up.stop() == 0
    await page.wait_for_selector("#conn.off", timeout=10_000)
    up.start("--simulate")
    # no reload by anyone: the page reconnects by itself and shows the city again
    await page.wait_for_selector("#conn.on", timeout=30_000)
    await expect(page.locator(".tile")).to_have_count(8, timeout=15_000)
    assert await page.locator("#seq").inner_text() != "" and seq_before
    await page.close()



async def test_alert_reaches_the_wall_and_an_acknowledgement_changes_it(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    """events.v1 band_change → alert engine → wall; a duty officer acknowledges → the wall shows it."""
    from opscenter.wire import TOPIC_EVENTS, Event

    wall = await _page(browser, up)
    before = int(await wall.locator("#a-P3").inner_text())
    ev = Event(
        "ev-wall-alert-1", "band_change", datetime.now(timezone.utc), "r-wall-alert", provider_id="p-haiyun",
        unit_id="u-gaj", district_id="d-huancui", resource_id="r-wall-alert",
        data={"metric": "cpu", "window": "1h", "from": "normal", "to": "high", "value": 93.5},
    )  # fmt: skip
    await _produce(up, [(TOPIC_EVENTS, b"r-wall-alert", json_encoder.encode(ev))])
    line = wall.locator("#history li", has_text="r-wall-alert")
    await line.first.wait_for(timeout=15_000)
    await expect(wall.locator("#a-P3")).to_have_text(str(before + 1), timeout=5_000)

    # a duty officer logs in (CSRF-protected form) and acknowledges the alert through the API
    console = await browser.new_page()
    await console.goto(f"{up.base}/login?next=/wall")
    await console.fill("input[name=username]", "duty")
    await console.fill("input[name=password]", "demo-duty")
    await console.click("button[type=submit]")
    await console.wait_for_url(f"{up.base}/wall**")
    me = await (await console.request.get(f"{up.base}/api/v1/me")).json()
    alerts = await (await console.request.get(f"{up.base}/api/v1/alerts?state=firing")).json()
    (alert,) = [a for a in alerts["alerts"] if a["labels"].get("resource") == "r-wall-alert"]
    r = await console.request.post(f"{up.base}/api/v1/alerts/{alert['alert_id']}/acknowledge",
                                   data={"comment": "处理中"}, headers={"x-csrf-token": me["csrf"]})  # fmt: skip
    assert r.status == 200, await r.text()
    await wall.locator("#history li .what.acknowledged", has_text="r-wall-alert").first.wait_for(timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    await wall.screenshot(path=str(ARTIFACTS / "wall-alert-acknowledged.png"))
    await console.close()
    await wall.close()


async def test_console_acknowledges_resolves_and_flags_a_new_p1(up: Up, browser) -> None:  # type: ignore[no-untyped-def]
    """The on-call console as a duty officer uses it: log in, see alerts arrive, act on them."""
    from opscenter.wire import TOPIC_EVENTS, Event

    page = await browser.new_page(viewport={"width": 1600, "height": 1000})
    await page.goto(f"{up.base}/console")
    assert "/login" in page.url  # anonymous: sent to log in first
    await page.fill("input[name=username]", "duty")
    await page.fill("input[name=password]", "demo-duty")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{up.base}/console")
    await expect(page.locator("#conn")).to_have_class("conn on", timeout=10_000)

    now = datetime.now(timezone.utc)
    band = Event("ev-console-1", "band_change", now, "r-console-1", provider_id="p-donghai", unit_id="u-gaj",
                 district_id="d-huancui", resource_id="r-console-1",
                 data={"metric": "mem", "window": "1h", "from": "normal", "to": "high", "value": 91.0})  # fmt: skip
    await _produce(up, [(TOPIC_EVENTS, b"r-console-1", json_encoder.encode(band))])
    row = page.locator("#alerts tr", has_text="r-console-1")
    await row.wait_for(timeout=15_000)
    await row.locator("button.ack").click()
    await expect(row.locator(".state")).to_have_text("已确认", timeout=10_000)
    await row.click()  # the timeline shows who acknowledged, and the system's own steps in Chinese
    await expect(page.locator("#timeline li").last).to_contain_text("duty", timeout=5_000)
    await expect(page.locator("#timeline li").first).to_contain_text("系统 规则触发")
    await expect(page.locator("#detail-title")).to_contain_text("利用率偏高：内存 1 小时窗口 91.0%")

    page.once("dialog", lambda d: asyncio.ensure_future(d.accept("扩容后恢复")))
    await row.locator("button.resolve").click()
    await expect(page.locator("#alerts tr", has_text="r-console-1")).to_have_count(0, timeout=10_000)

    breach = Event("ev-console-p1", "sla_breach", datetime.now(timezone.utc), "inc-console-1", provider_id="p-haiyun",
                   severity="P1", data={"incident_id": "inc-console-1", "deadline": "response"})  # fmt: skip
    await _produce(up, [(TOPIC_EVENTS, b"inc-console-1", json_encoder.encode(breach))])
    await expect(page.locator("#p1-flash")).to_be_visible(timeout=15_000)
    await expect(page.locator("#alerts tr", has_text="inc-console-1").locator(".sev")).to_have_text("P1")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "console-new-p1.png"))
    await page.close()
