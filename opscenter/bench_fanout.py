"""``opscenter bench fanout``: N websocket clients on the live feed while notices flow; latency p50/p99.

The server side is the product's own LiveHub over a real Valkey (the /ws/live handler without
the login check); the clients run in a separate process, so they do not share the server's
event loop. Latency = time a frame arrives − publish time of the newest notice it reflects.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from dashboard.feed import UVICORN_WS, LiveHub
from opscenter import demo
from opscenter.embedded import free_port, start_valkey
from opscenter.inventory import Registry
from streams.live import CHANNEL

GOAL_CLIENTS = 1000
GOAL_P99_MS = 250.0

CLIENT_SCRIPT = r"""
import asyncio, json, sys, time
import orjson, websockets
url, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lat, errors, connected = [], 0, 0
async def one(i):
    global errors, connected
    seen = 0
    try:
        async with websockets.connect(url, open_timeout=30, max_size=2**24) as ws:
            connected += 1
            end = time.time() + seconds
            while time.time() < end:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, end - time.time()))
                except asyncio.TimeoutError:
                    break
                now = time.time() * 1000
                f = orjson.loads(raw)
                t = f["totals"]["notice_ms"]
                if t and t != seen:
                    seen = t
                    lat.append(now - t)
    except Exception:
        errors += 1
async def main():
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(i)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
asyncio.run(main())
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None
print(json.dumps({"clients": n, "connected": connected, "errors": errors, "deliveries": len(lat),
                  "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": lat[-1] if lat else None}))
"""


async def _publisher(redis: Redis, city: demo.City, stop: asyncio.Event, every_s: float = 0.1) -> int:
    """Telemetry notices like the ingest stage's, 50 resources each, ``1/every_s`` per second."""
    n = 0
    rids = [r.resource_id for r in city.resources]
    while not stop.is_set():
        now_ms = int(time.time() * 1000)
        rows = [[rids[(n * 50 + i) % len(rids)], 50.0, 40.0, 30.0, now_ms] for i in range(50)]
        await redis.publish(CHANNEL, orjson.dumps({"type": "telemetry", "ts_ms": now_ms, "resources": rows, "seq": n}))
        n += 1
        await asyncio.sleep(every_s)
    return n


async def run_level(clients: int, seconds: float, resources: int = 300) -> dict[str, Any]:
    """One level: ``clients`` sockets for ``seconds`` against a fresh hub and Valkey."""
    tmp = Path(tempfile.mkdtemp(prefix="opscenter-fanout-"))
    vport, wport = free_port(), free_port()
    valkey = start_valkey("127.0.0.1", vport, tmp / "valkey", tmp / "logs")
    redis = Redis.from_url(f"redis://127.0.0.1:{vport}/0")
    city = demo.city(resources)
    registry = Registry()
    for e in demo.lifecycle_events(city, __import__("datetime").datetime.now(__import__("datetime").timezone.utc)):
        registry.apply(e)
    names = {o.org_id: o.name_zh for o in city.districts + city.units}
    hub = LiveHub(redis, registry, names, [d.org_id for d in city.districts])

    async def ws(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    app = Starlette(routes=[WebSocketRoute("/ws/live", ws)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=wport, log_level="error",
                                           lifespan="off", backlog=4096, **UVICORN_WS))  # fmt: skip
    server.capture_signals = __import__("contextlib").nullcontext  # type: ignore[method-assign]
    stop = asyncio.Event()
    try:
        await hub.start()
        serve = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        pub = asyncio.create_task(_publisher(redis, city, stop))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT_SCRIPT, f"ws://127.0.0.1:{wport}/ws/live", str(clients), str(seconds),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        stop.set()
        await pub
        result = json.loads(out.decode().strip().splitlines()[-1])
        server.should_exit = True
        await serve
    finally:
        await hub.stop()
        await redis.aclose()
        valkey.stop()
    return result


async def fanout(levels: list[int], seconds: float) -> dict[str, Any]:
    results = []
    for n in levels:
        r = await run_level(n, seconds)
        results.append(r)
        print(f"  {n:>6} clients: connected {r['connected']:>6}, p50 {r['p50_ms'] or 0:7.1f} ms, "
              f"p99 {r['p99_ms'] or 0:7.1f} ms, max {r['max_ms'] or 0:7.1f} ms", flush=True)  # fmt: skip
    held = [r["clients"] for r in results
            if r["connected"] == r["clients"] and r["p99_ms"] is not None and r["p99_ms"] < GOAL_P99_MS]  # fmt: skip
    return {"scenario": "fanout", "seconds": seconds, "levels": results, "largest_n_p99_under_goal": max(held, default=0),
            "goal_clients": GOAL_CLIENTS, "goal_p99_ms": GOAL_P99_MS}  # fmt: skip
