"""What each CLI command runs: ``up`` (all embedded), ``worker``, ``web``, ``migrate``, ``simulate``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from datetime import datetime, timezone
from typing import Any

import uvicorn
from aiokafka import AIOKafkaProducer
from faust.contrib.asgi import faust_app_running

from opscenter import demo, kafka
from opscenter.embedded import EmbeddedStack
from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings, redact
from opscenter.epochs import new_epoch
from opscenter.store import AsyncStore, connect, migrate as run_migrations
from opscenter.tokens import TokenStore
from opscenter.wire import TOPIC_INCIDENTS, TOPIC_LIFECYCLE, TOPIC_TELEMETRY, json_encoder

log = logging.getLogger("opscenter")
DEMO_KIOSK_TOKEN = "demo-kiosk"


def _stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM; the one place that owns process signals."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _uvicorn(app: Any, host: str, port: int) -> uvicorn.Server:
    from dashboard.feed import UVICORN_WS

    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, lifespan="on", log_level="warning", **UVICORN_WS)
    )
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign] - signals are ours
    return server


async def _serve(server: uvicorn.Server) -> asyncio.Task:
    task = asyncio.create_task(server.serve(), name="uvicorn")
    while not server.started:
        if task.done():
            task.result()  # raises the bind error
            raise RuntimeError("web server stopped during start-up")
        await asyncio.sleep(0.02)
    return task


async def _with_retry(what: str, fn: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await fn()
        except Exception as exc:  # noqa: BLE001 - services still starting
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not reachable after {timeout_s:.0f}s: {exc}") from exc
            await asyncio.sleep(0.5)


async def publish_demo(services: Services, n_resources: int) -> demo.City:
    """First start: the demo city's organisations, provider tokens and inventory (via lifecycle.v1)."""
    city = demo.city(n_resources)
    if len(services.registry) == 0:
        orgs = city.providers + city.districts + city.units
        now_ns = time.time_ns()
        await services.store.insert_columns(
            "orgs",
            list(zip(*[[o.kind, o.org_id, o.name_zh, o.name_en, o.parent, now_ns] for o in orgs])),
            ["kind", "org_id", "name_zh", "name_en", "parent", "version"],
        )
        tokens = TokenStore(services.store)
        for provider_id, token in city.provider_tokens.items():
            await tokens.add(token, f"demo {provider_id}", "provider", provider_id)
        await tokens.add(DEMO_KIOSK_TOKEN, "demo wall screen", "kiosk", "")
        events = demo.lifecycle_events(city, datetime.now(timezone.utc))
        await asyncio.gather(
            *[services.producer.send(TOPIC_LIFECYCLE, json_encoder.encode(e), key=e.resource_id.encode())
              for e in events]
        )  # fmt: skip
        await services.producer.flush()
        log.info("demo inventory published: %d resources", len(events))
    return city


async def _wait_registry(services: Services, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(services.registry) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.2)


async def _simulate(services: Services, city: demo.City, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from opscenter import simulator

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await services.producer.send(topic, value=value, key=key)

    await _wait_registry(services, len(city.resources))
    if args.backfill_days:
        n = await simulator.backfill(send, city, args.backfill_days, now_ms=int(time.time() * 1000))
        log.info("backfill: %d samples produced", n)
    await simulator.produce_live(send, city, rate=args.rate, duration_s=None, stop=stop)


def _banner(settings: Settings, city: demo.City | None) -> str:
    base = f"http://{settings.host}:{settings.web_port}"
    lines = [
        "",
        "威海市市级政务云 运行监控指挥中心 / Weihai government cloud operations control center",
        f"  状态页 status page : {base}/",
        f"  健康 health        : {base}/healthz   {base}/readyz",
        f"  指标 metrics       : {base}/metrics",
        f"  上报 ingest        : POST {base}/api/v1/telemetry  (Authorization: Bearer <provider token>)",
        f"  Kafka              : {kafka.describe(settings)}{'  (embedded Tansu, memory only)' if settings.embedded_kafka else ''}",
        f"  Redis              : {redact(settings.redis())}",
        f"  ClickHouse         : {redact(settings.clickhouse())}",
    ]
    if city is not None:
        from opscenter.users import DEMO_USERS, load_users_file

        lines.append(f"  大屏 wall screen   : {base}/kiosk?token={DEMO_KIOSK_TOKEN}   (or log in at {base}/wall)")
        lines.append("  演示账号 demo users (password = demo-<username>; demo only):")
        lines += [f"    {u['username']:<10} {u['role']:<9} {u.get('scope') or ''}" for u in load_users_file(DEMO_USERS)]
        lines.append("  演示令牌 demo provider tokens (demo only):")
        lines += [f"    {p:<12} {t}" for p, t in city.provider_tokens.items()]
    lines.append("  Ctrl-C 停止 / to stop")
    return "\n".join(lines)


async def up(settings: Settings, args: argparse.Namespace) -> int:
    """Everything on one machine: embedded services, worker and web in one event loop."""
    if args.resources:
        settings = settings.model_copy(update={"simulate_resources": args.resources})
    stack = EmbeddedStack()
    await asyncio.to_thread(stack.start, settings)
    services: Services | None = None
    tasks: list[asyncio.Task] = []
    try:
        stop = _stop_event()
        created = await _with_retry("Kafka broker", lambda: create_topics(settings))
        services = await open_services(settings)
        for topic in (TOPIC_TELEMETRY, TOPIC_INCIDENTS):  # a fresh log (the embedded broker keeps nothing)
            if topic in created:
                await new_epoch(services.store, topic)
        city = await publish_demo(services, settings.simulate_resources) if settings.demo else None
        from dashboard.app import build_app
        from dashboard.feed import tune_gc
        from streams.app import build_faust_app

        tune_gc()  # the live feed's screens: no full collection pausing them every few seconds
        fapp = build_faust_app(services)
        server = _uvicorn(build_app(services), settings.host, settings.web_port)
        async with faust_app_running(fapp, stop_timeout=30):
            tasks.append(await _serve(server))
            print(_banner(settings, city), flush=True)
            if args.simulate and city is not None:
                tasks.append(asyncio.create_task(_simulate(services, city, args, stop), name="simulator"))
            await stop.wait()
            log.info("stopping …")
            server.should_exit = True
            for t in tasks[1:]:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for t in tasks:
            t.cancel()
        if services is not None:
            await services.aclose()
        await asyncio.to_thread(stack.stop)
    return 0


async def worker(settings: Settings) -> int:
    """The stream processor alone (production): health and metrics on the worker web port."""
    from dashboard.app import build_worker_app
    from streams.app import build_faust_app

    stop = _stop_event()
    services = await open_services(settings)
    try:
        fapp = build_faust_app(services)
        server = _uvicorn(build_worker_app(services), settings.host, settings.worker_web_port)
        async with faust_app_running(fapp, stop_timeout=30):
            task = await _serve(server)
            await stop.wait()
            server.should_exit = True
            await task
    finally:
        await services.aclose()
    return 0


async def web(settings: Settings) -> int:
    """The web app alone (production): dashboard, API and ingest."""
    from dashboard.app import build_app
    from dashboard.feed import tune_gc

    tune_gc()  # the live feed's screens: no full collection pausing them every few seconds
    stop = _stop_event()
    services = await open_services(settings)
    try:
        server = _uvicorn(build_app(services), settings.host, settings.web_port)
        task = await _serve(server)
        await stop.wait()
        server.should_exit = True
        await task
    finally:
        await services.aclose()
    return 0


async def migrate(settings: Settings) -> int:
    """Apply ClickHouse migrations and create the topics."""
    client = await asyncio.to_thread(connect, settings)
    applied = await asyncio.to_thread(run_migrations, client, settings)
    print(f"migrations applied: {applied or 'none (up to date)'}")
    created = await _with_retry("Kafka broker", lambda: create_topics(settings))
    for topic in (TOPIC_TELEMETRY, TOPIC_INCIDENTS):
        if topic in created:
            await new_epoch(AsyncStore(client), topic)
    print(f"topics created: {created or 'none (all exist)'}")
    return 0


async def simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Produce the demo city's telemetry to the configured broker."""
    from opscenter import simulator

    city = demo.city(args.resources or settings.simulate_resources)
    stop = _stop_event()
    producer = AIOKafkaProducer(**kafka.client_kwargs(settings), acks="all", linger_ms=5)
    await producer.start()

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await producer.send(topic, value=value, key=key)

    try:
        if args.publish_inventory:
            for e in demo.lifecycle_events(city, datetime.now(timezone.utc)):
                await producer.send(TOPIC_LIFECYCLE, json_encoder.encode(e), key=e.resource_id.encode())
        total = 0
        if args.backfill_days:
            total += await simulator.backfill(send, city, args.backfill_days, now_ms=int(time.time() * 1000))
        if not args.backfill_only:
            total += await simulator.produce_live(send, city, rate=args.rate, duration_s=args.duration, stop=stop)
        await producer.flush()
        print(f"samples produced: {total}")
    finally:
        await producer.stop()
    return 0
