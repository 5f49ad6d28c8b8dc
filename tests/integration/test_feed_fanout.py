"""The live feed's fan-out over real sockets: the hub on real Valkey, served by uvicorn with the
product's websocket settings; one screen stops reading (its TCP window closes, the server's buffer
fills), another keeps up."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import uvicorn
import websockets
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from dashboard import feed
from dashboard.feed import EVENTS_CHANNEL, UVICORN_WS, LiveHub
from opscenter.embedded import free_port
from opscenter.inventory import Registry
from streams.live import CHANNEL as LIVE_CHANNEL


async def until(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
async def served(valkey: str) -> AsyncIterator[tuple[LiveHub, int, Redis]]:
    redis = Redis.from_url(valkey)
    hub = LiveHub(redis, Registry(), {}, [], frame_interval_s=0.02, heartbeat_s=0.1)

    async def live(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[WebSocketRoute("/ws/live", live)]), host="127.0.0.1",
                                           port=port, log_level="error", lifespan="off", timeout_graceful_shutdown=5,
                                           **UVICORN_WS))  # fmt: skip
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    await hub.start()
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield hub, port, redis
    finally:
        server.should_exit = True
        await task
        await hub.stop()
        await redis.aclose()


def open_and_stop_reading(port: int) -> socket.socket:
    """A websocket handshake by hand, then nothing read ever again (a screen that froze)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: it closes after a few KB
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())  # fmt: skip
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # the response head only, byte by byte: no frame is taken
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def stalled(hub: LiveHub) -> int:
    """Screens whose latest send has not left yet."""
    return sum(1 for c in hub.clients if c.sending_since)


async def notices(redis: Redis, stop: asyncio.Event) -> None:
    """A telemetry notice every 20 ms, as the ingest stage publishes them."""
    while not stop.is_set():
        now_ms = int(time.time() * 1000)
        await redis.publish(LIVE_CHANNEL, orjson.dumps({"type": "telemetry", "ts_ms": now_ms, "resources": []}))
        await asyncio.sleep(0.02)


async def test_a_screen_that_stops_reading_holds_up_no_other_and_is_dropped(
    served: tuple[LiveHub, int, Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, port, redis = served
    monkeypatch.setattr(feed, "SEND_TIMEOUT_S", 3.0)
    # frames of ~120 KB (30 history lines of 4 KB): a few fill the frozen screen's window and buffers
    for i in range(30):
        await redis.publish(EVENTS_CHANNEL, orjson.dumps({"kind": "note", "ts_ms": i, "text": "x" * 4000}))
    await until(lambda: len(hub.history) == 30, timeout_s=5)
    frozen = await asyncio.to_thread(open_and_stop_reading, port)
    stop = asyncio.Event()
    publishing = asyncio.create_task(notices(redis, stop))
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/live", max_size=2**24) as screen:
            await until(lambda: stalled(hub) == 1, timeout_s=5)  # the frozen screen's send is waiting
            since = time.monotonic()
            latencies = []
            while time.monotonic() - since < 1.5:  # well inside its send timeout
                frame = orjson.loads(await asyncio.wait_for(screen.recv(), 2))
                latencies.append(time.time() * 1000 - frame["totals"]["notice_ms"])
            assert stalled(hub) == 1 and len(hub.clients) == 2  # still waiting on the frozen one …
            assert len(latencies) >= 20 and max(latencies[5:]) < 1000  # … and the other got fresh frames all along
            await until(lambda: len(hub.clients) == 1, timeout_s=5)  # past its send timeout: dropped
            assert stalled(hub) == 0
            before = hub.notice_ms
            frame = orjson.loads(await asyncio.wait_for(screen.recv(), 2))
            while frame["totals"]["notice_ms"] <= before:
                frame = orjson.loads(await asyncio.wait_for(screen.recv(), 2))
    finally:
        stop.set()
        await publishing
        frozen.close()
