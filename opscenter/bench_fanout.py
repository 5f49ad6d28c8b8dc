"""``opscenter bench fanout``: N websocket clients on the live feed while notices flow; latency p50/p99.

The server side is the product's own LiveHub over a real Valkey (the /ws/live handler without
the login check), served by uvicorn as ``opscenter web`` serves it (same websocket settings and
collector thresholds); the clients run in a separate process, so they do not share the server's
event loop. Latency = time a frame arrives − publish time of the newest notice it reflects,
over every frame each client receives in its ``seconds`` after connecting (the connection storm
of the first ~0.5 s included; ``p99_ms_all_connected`` leaves it out, for comparison).

The clients stand for browsers on other machines: their CPU on our 2 cores is the cost of
measuring, not of the product. So they do as little as a client can: a frame is not parsed,
``"notice_ms":<digits>`` is found with a bytes search (``totals.notice_ms``, the one key of that
name in a frame — inside a JSON string a quote would be escaped), and one timer per client
bounds its run instead of a task per receive. Both sides' CPU seconds are reported per level.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from dashboard.feed import UVICORN_WS, LiveHub, tune_gc
from opscenter import demo
from opscenter.embedded import free_port, start_valkey
from opscenter.inventory import Registry
from streams.live import CHANNEL

GOAL_CLIENTS = 1000
GOAL_P99_MS = 250.0

CLIENT_SCRIPT = r"""
import asyncio, json, re, sys, time
import websockets
url, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
NOTICE = re.compile(rb'"notice_ms":(\d+)')  # totals.notice_ms: the first (and only) key of that name in a frame
lat, errors, connected = [], 0, 0
first_ms = all_ms = 0.0  # first and last connection established
async def one(i):
    global errors, connected, first_ms, all_ms
    seen = 0
    try:
        async with websockets.connect(url, open_timeout=30, max_size=2**24) as ws:
            connected += 1
            first_ms = first_ms or time.time() * 1000
            if connected == n:
                all_ms = time.time() * 1000
            try:
                async with asyncio.timeout(seconds):  # one timer per client, not a task per frame (wait_for)
                    while True:
                        raw = await ws.recv(decode=False)
                        now = time.time() * 1000
                        m = NOTICE.search(raw)
                        t = int(m.group(1)) if m else 0
                        if t and t != seen:
                            seen = t
                            lat.append((now - t, t >= all_ms > 0))
            except TimeoutError:
                pass
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
after = sorted(ms for ms, all_in in lat if all_in)  # notices published once every client was connected
lat = sorted(ms for ms, _ in lat)
q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))] if v else None
print(json.dumps({"clients": n, "connected": connected, "errors": errors, "deliveries": len(lat),
                  "p50_ms": q(lat, 0.5), "p99_ms": q(lat, 0.99), "max_ms": lat[-1] if lat else None,
                  "connect_s": round((all_ms - first_ms) / 1000, 2) if all_ms else None,
                  "p99_ms_all_connected": q(after, 0.99)}))
"""


#: telemetry notices like the ingest stage's, 50 resources each, ``1/every_s`` per second, from a
#: process of their own, as the worker publishes them: in the server's event loop the publisher's
#: timer fell into step with the frame loop's and every notice waited a whole frame interval
PUBLISHER_SCRIPT = r"""
import sys, time
import orjson, redis
url, channel, every_s, rids = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split(",")
r = redis.Redis.from_url(url)
n, start = 0, time.monotonic()
while True:
    now_ms = int(time.time() * 1000)
    rows = [[rids[(n * 50 + i) % len(rids)], 50.0, 40.0, 30.0, now_ms] for i in range(50)]
    r.publish(channel, orjson.dumps({"type": "telemetry", "ts_ms": now_ms, "resources": rows, "seq": n}))
    n += 1
    time.sleep(max(0.0, start + n * every_s - time.monotonic()))
"""


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
    gc_before = tune_gc()  # as the product's web process does (opscenter web / up)
    pub: asyncio.subprocess.Process | None = None
    try:
        await hub.start()
        serve = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        pub = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISHER_SCRIPT, f"redis://127.0.0.1:{vport}/0", CHANNEL, "0.1",
            ",".join(r.resource_id for r in city.resources),
        )  # fmt: skip
        cpu0, children0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT_SCRIPT, f"ws://127.0.0.1:{wport}/ws/live", str(clients), str(seconds),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        server_cpu_s, children1 = time.process_time() - cpu0, resource.getrusage(resource.RUSAGE_CHILDREN)
        result = json.loads(out.decode().strip().splitlines()[-1])
        # CPU seconds of each side over the level (2 cores: the sum shows how busy the machine was)
        result["server_cpu_s"] = round(server_cpu_s, 2)
        result["client_cpu_s"] = round(children1.ru_utime + children1.ru_stime - children0.ru_utime
                                       - children0.ru_stime, 2)  # fmt: skip
        server.should_exit = True
        await serve
    finally:
        if pub is not None and pub.returncode is None:
            pub.terminate()
            await pub.wait()
        await hub.stop()
        await redis.aclose()
        valkey.stop()
        gc.set_threshold(*gc_before)
    return result


async def fanout(levels: list[int], seconds: float) -> dict[str, Any]:
    results = []
    for n in levels:
        r = await run_level(n, seconds)
        results.append(r)
        print(f"  {n:>6} clients: connected {r['connected']:>6}, p50 {r['p50_ms'] or 0:7.1f} ms, "
              f"p99 {r['p99_ms'] or 0:7.1f} ms, max {r['max_ms'] or 0:7.1f} ms (all connected after "
              f"{r['connect_s'] or 0:.2f} s, p99 from then {r['p99_ms_all_connected'] or 0:.1f} ms); CPU s "
              f"server {r['server_cpu_s']:.1f}, clients {r['client_cpu_s']:.1f}", flush=True)  # fmt: skip
    held = [r["clients"] for r in results
            if r["connected"] == r["clients"] and r["p99_ms"] is not None and r["p99_ms"] < GOAL_P99_MS]  # fmt: skip
    return {"scenario": "fanout", "seconds": seconds, "levels": results, "largest_n_p99_under_goal": max(held, default=0),
            "goal_clients": GOAL_CLIENTS, "goal_p99_ms": GOAL_P99_MS}  # fmt: skip
