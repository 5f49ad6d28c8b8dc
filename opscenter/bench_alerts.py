"""``opscenter bench alert-latency``: breaching sample produced → alert on the console websocket.

In one run, on a private embedded stack:

1. **capacity**: the pipeline scenario's measurement (pre-produced telemetry through the Faust
   worker into ClickHouse, samples/s) gives this machine's capacity *now*;
2. for each load level (10 %, 50 %, 90 % of that capacity) a producer process keeps background
   telemetry flowing at that rate (values that breach nothing) and, every half second, sends one
   breaching sample (CPU 99 %) for a resource that never breached before;
3. a websocket client process on ``/ws/live`` (the feed the console and the wall read) notes
   when each of those resources first appears as an alert in a frame.

Latency = frame received − breaching sample produced (wall clocks of two processes on one
machine). The worker (ingest, live state, alert agent) and the web side (LiveHub) share this
process, as they do under ``opscenter up``. The rule: CPU > 95 % with no hold, P3.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from opscenter.embedded import free_port, start_tansu, start_valkey
from opscenter.services import create_topics, open_services
from opscenter.settings import Settings

GOAL_P99_MS = 500.0
GOAL_LEVEL = 50
RULES = """
defaults: {group_wait_s: 0}
receivers: {oncall: {}}
escalation: {P3: [{after_s: 0, receivers: [oncall]}]}
rules:
  - name: cpu_breach
    type: threshold
    kind: metric
    field: data.cpu_pct
    op: ">"
    value: 95
    recover: 80
    labels: [provider, resource]
    severity: P3
    summary: {zh: "资源 {resource} CPU {value}%", en: "{resource} CPU {value}%"}
"""

#: the load generator: background batches at a rate, one breaching sample every ``every_s``
PRODUCER_SCRIPT = r"""
import asyncio, json, sys, time
from datetime import datetime, timezone
import orjson
from aiokafka import AIOKafkaProducer
bootstrap, rate, seconds, warm_s, every_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
background = json.loads(sys.argv[6]); breachers = json.loads(sys.argv[7])
def iso(ms): return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()
def batch(bid, rows):
    return orjson.dumps({"provider_id": "p-bench", "batch_id": bid, "samples": [
        {"resource_id": r, "ts": iso(t), "cpu_pct": c, "mem_pct": 40.0, "storage_pct": 30.0} for r, t, c in rows]})
async def main():
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2, max_request_size=8 * 1024 * 1024)
    await p.start()
    per_batch = 500
    sent, injected, k, i = 0, {}, 0, 0
    t0 = time.monotonic(); next_breach = t0 + warm_s
    while time.monotonic() - t0 < seconds:
        now = time.monotonic()
        if i < len(breachers) and now >= next_breach:
            rid = breachers[i]; i += 1; next_breach += every_s
            value = batch(f"x-{rid}", [(rid, int(time.time() * 1000), 99.0)])
            injected[rid] = time.time()
            await p.send(f"telemetry.v1", value, key=f"p-bench/{rid}".encode())
        due = int(rate * (now - t0)) - sent
        if due >= per_batch or (rate < per_batch * 10 and due > 0):
            n = min(max(due, 1), per_batch)
            ms = int(time.time() * 1000)
            rows = [(background[(k * per_batch + j) % len(background)], ms, 50.0) for j in range(n)]
            await p.send("telemetry.v1", batch(f"bg-{k}", rows), key=f"p-bench/{k % 16}".encode())
            sent += n; k += 1
        else:
            await asyncio.sleep(0.002)
    await p.flush(); await p.stop()
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - t0, "injected": injected}))
asyncio.run(main())
"""

#: the console: first frame in which each watched resource shows as an alert
CLIENT_SCRIPT = r"""
import asyncio, json, sys, time
import orjson, websockets
url, seconds = sys.argv[1], float(sys.argv[2])
watch = set(json.loads(sys.argv[3])); seen = {}
async def main():
    async with websockets.connect(url, open_timeout=30, max_size=2**24) as ws:
        print("connected", flush=True)
        end = time.time() + seconds
        while time.time() < end and len(seen) < len(watch):
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, end - time.time()))
            except asyncio.TimeoutError:
                break
            now = time.time()
            for h in orjson.loads(raw).get("history") or []:
                rid = (h.get("labels") or {}).get("resource")
                if rid in watch and rid not in seen and h.get("state") == "firing":
                    seen[rid] = now
asyncio.run(main())
print(json.dumps(seen))
"""


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


async def _register(settings: Settings, rids: list[str]) -> None:
    from aiokafka import AIOKafkaProducer

    from opscenter.wire import TOPIC_LIFECYCLE, LifecycleEvent, Spec, json_encoder

    p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap(), acks="all", linger_ms=5)
    await p.start()
    try:
        now = datetime.now(timezone.utc)
        for rid in rids:
            ev = LifecycleEvent(f"bench-{rid}", rid, "delivered", now, "p-bench", "u-bench", "d-bench", rid,
                                Spec(4, 8, 100), 15)  # fmt: skip
            await p.send(TOPIC_LIFECYCLE, json_encoder.encode(ev), key=rid.encode())
        await p.flush()
    finally:
        await p.stop()


async def _levels(settings: Settings, capacity: float, levels: list[int], seconds: float) -> list[dict[str, Any]]:
    from faust.contrib.asgi import faust_app_running

    from alerts.config import parse_config
    from alerts.service import from_services
    from dashboard.feed import UVICORN_WS, LiveHub
    from streams.app import build_faust_app

    background = [f"bg-{i}" for i in range(1000)]
    per_level = max(4, int((seconds - 4) / 0.5))
    breachers = {lv: [f"x{lv}-{i}" for i in range(per_level)] for lv in levels}
    await _register(settings, background + [r for rs in breachers.values() for r in rs])
    services = await open_services(settings)
    from_services(services, parse_config(RULES))
    hub = LiveHub(services.redis, services.registry, {}, [])

    async def ws(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    wport = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[WebSocketRoute("/ws/live", ws)]), host="127.0.0.1",
                                           port=wport, log_level="error", lifespan="off", **UVICORN_WS))  # fmt: skip
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    out = []
    try:
        async with faust_app_running(build_faust_app(services), stop_timeout=30):
            while len(services.registry) < len(background):
                await asyncio.sleep(0.1)
            await hub.start()
            serve = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.02)
            for lv in levels:
                rate = capacity * lv / 100
                client = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", CLIENT_SCRIPT, f"ws://127.0.0.1:{wport}/ws/live", str(seconds + 20),
                    json.dumps(breachers[lv]), stdout=subprocess.PIPE,
                )  # fmt: skip
                assert client.stdout is not None
                await client.stdout.readline()  # "connected"
                producer = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", PRODUCER_SCRIPT, settings.kafka_bootstrap(), str(rate), str(seconds), "3",
                    "0.5", json.dumps(background), json.dumps(breachers[lv]), stdout=subprocess.PIPE,
                )  # fmt: skip
                prod_out, _ = await producer.communicate()
                cli_out, _ = await client.communicate()
                sent = json.loads(prod_out.decode().strip().splitlines()[-1])
                seen = json.loads(cli_out.decode().strip().splitlines()[-1])
                lat = [(seen[r] - t) * 1000 for r, t in sent["injected"].items() if r in seen]
                row = {
                    "load_pct": lv, "target_samples_s": round(rate),
                    "achieved_samples_s": round(sent["sent"] / sent["seconds"]),
                    "breaches": len(sent["injected"]), "alerts_seen": len(lat),
                    "p50_ms": _round(_percentile(lat, 0.5)), "p99_ms": _round(_percentile(lat, 0.99)),
                    "max_ms": _round(max(lat) if lat else None),
                }  # fmt: skip
                out.append(row)
                print(f"  {lv:>3} % load ({row['achieved_samples_s']:>7,} samples/s): {row['alerts_seen']}/"
                      f"{row['breaches']} alerts, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
                      f"max {row['max_ms']} ms", flush=True)  # fmt: skip
            server.should_exit = True
            await serve
    finally:
        await hub.stop()
        alerts = services.domains.get("alerts")
        if alerts is not None:
            await alerts.aclose()
        await services.aclose()
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


async def alert_latency(levels: list[int], seconds: float = 12.0, capacity_samples: int = 300_000,
                        capacity: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Measure the capacity (unless given), then the latency at each load level."""

    if capacity is None:  # the pipeline scenario, in this run (its own process: one chDB path each)
        resources = max(100, min(2000, capacity_samples // 100))  # a few minutes of history each
        from opscenter.bench import pipeline_subprocess

        fig = await asyncio.to_thread(pipeline_subprocess, capacity_samples, resources)
        capacity = float(fig["end_to_end_samples_s"])
        print(f"  capacity (pipeline end to end, this run): {capacity:,.0f} samples/s", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="opscenter-bench-alerts-"))
    kport, rport = free_port(), free_port()
    tansu = start_tansu("127.0.0.1", kport, tmp / "logs")
    valkey = start_valkey("127.0.0.1", rport, tmp / "valkey", tmp / "logs")
    try:
        s = Settings(kafka_url=f"kafka://127.0.0.1:{kport}", redis_url=f"redis://127.0.0.1:{rport}/0",
                     data_dir=tmp, topic_partitions=4, demo=False, app_id="bench-alerts")  # fmt: skip
        await create_topics(s)
        rows = await _levels(s, capacity, levels, seconds)
    finally:
        tansu.stop()
        valkey.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    at_goal = next((r for r in rows if r["load_pct"] == GOAL_LEVEL), None)
    return {"scenario": "alert-latency", "capacity_samples_s": round(capacity), "seconds_per_level": seconds,
            "levels": rows, "goal_p99_ms_at_50pct": GOAL_P99_MS,
            "p99_ms_at_50pct": at_goal["p99_ms"] if at_goal else None}  # fmt: skip
