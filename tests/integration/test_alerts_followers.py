"""The alert service's Redis followers: state after an empty Valkey (issue #5/#8, docs/faults.md), live metrics.

The alert service keeps its state in Redis. A Valkey restarted without persistence comes back
empty while the service still runs: the next read rebuilds open alerts and silences from
ClickHouse (every transition is written there) and stores them again; the control and live
followers resubscribe by themselves.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redis.asyncio import Redis

from alerts import persist
from alerts.agent import follow_control
from alerts.config import parse_config
from alerts.model import Matcher, Observation
from alerts.silences import Silence
from alerts.service import AlertService
from opscenter.embedded import free_port, start_valkey
from opscenter.services import open_services
from opscenter.settings import Settings
from tests.integration.helpers import eventually
from tests.integration.test_alerts import rules


async def test_running_service_rebuilds_alert_state_after_an_empty_valkey(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    valkey = start_valkey("127.0.0.1", port, tmp_path / "valkey", tmp_path / "logs")
    s = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    services = await open_services(s)
    config = parse_config(rules("http://127.0.0.1:9/unused", group_wait_s=0.0))
    svc = AlertService(services.redis, services.store, config)
    reloads = 0

    def counted_reload(path: str | None = None) -> object:
        nonlocal reloads
        reloads += 1
        return svc.config

    svc.reload = counted_reload  # type: ignore[method-assign]
    control = asyncio.ensure_future(follow_control(svc, services))
    try:
        await svc.start()
        now = int(time.time() * 1000)
        await svc.observe([Observation("sla_breach", now, {"provider": "p-vk", "subject": "inc-vk",
                                       "severity": "P1"}, {"clock": "respond"}, event_id="ev-vk-1")])  # fmt: skip
        (fp,) = (await svc.snapshot()).alerts
        await svc.acknowledge(fp, "duty-officer", "处理中")
        silence = Silence("sil-vk", (Matcher.parse("provider=p-vk"),), now, now + 3_600_000, "duty-officer",
                          "maintenance", now)  # fmt: skip
        await svc.put_silence(silence, "duty-officer")
        await svc.drain()  # transitions are in ClickHouse

        valkey.stop()
        valkey = start_valkey("127.0.0.1", port, tmp_path / "valkey", tmp_path / "logs")
        probe = Redis.from_url(s.redis())
        assert not await probe.exists(persist.VERSION)  # it really came back empty

        async def rebuilt() -> bool:
            try:
                state = await svc.snapshot()
            except Exception:  # noqa: BLE001 - the client reconnects on the next call
                return False
            return fp in state.alerts

        await eventually(rebuilt, timeout_s=20)
        state = await svc.snapshot()
        alert = state.alerts[fp]
        assert (alert.state, alert.ack_by) == ("acknowledged", "duty-officer")
        assert "sil-vk" in state.silences
        # stored again, so another process sees it too; and the alert still resolves by hand
        assert await probe.exists(persist.VERSION)
        await svc.resolve(fp, "duty-officer", "已恢复")
        assert (await svc.snapshot()).alerts[fp].state == "resolved"

        # the control follower resubscribed: it re-read the rules once, and hears requests again
        await eventually(lambda: _is(reloads >= 1), timeout_s=20)
        before = reloads

        async def heard() -> bool:
            await probe.publish(persist.CONTROL_CHANNEL, b'{"reload": true}')
            await asyncio.sleep(0.2)
            return reloads > before

        await eventually(heard, timeout_s=20)
        await probe.aclose()
        await svc.drain()
    finally:
        control.cancel()
        await asyncio.gather(control, return_exceptions=True)
        await svc.aclose()
        await services.aclose()
        valkey.stop()


async def _is(v: bool) -> bool:
    return v


LIVE_RULES = """
defaults: {group_wait_s: 0}
receivers: {oncall: {}}
escalation: {P3: [{after_s: 0, receivers: [oncall]}]}
rules:
  - name: cpu_hot
    type: threshold
    kind: metric
    field: data.cpu_pct
    op: ">"
    value: 90
    recover: 80
    labels: [resource]
    severity: P3
    summary: {zh: "{resource} CPU 高", en: "{resource} CPU high"}
"""


async def test_a_resource_turning_hot_is_evaluated_at_once_not_after_the_interval(settings: Settings) -> None:
    """Live samples are coalesced (one evaluation per interval), but a new breach does not wait."""
    import orjson

    from alerts.agent import follow_live
    from streams.live import CHANNEL

    services = await open_services(settings)
    svc = AlertService(services.redis, services.store, parse_config(LIVE_RULES))
    await svc.start()
    task = asyncio.ensure_future(follow_live(svc, services, interval_s=10.0))
    probe = Redis.from_url(settings.redis())
    try:
        now = int(time.time() * 1000)

        async def publish(cpu: float, ts: int) -> None:
            await probe.publish(CHANNEL, orjson.dumps({"type": "telemetry", "resources": [["hot-1", cpu, 10, 10, ts]]}))

        # a calm value is evaluated and starts the 10 s interval
        await eventually(lambda: _subscribed(probe, CHANNEL), timeout_s=10)
        await publish(40.0, now)
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        await publish(97.0, now + 1000)

        async def firing() -> bool:
            return any(a.labels.get("resource") == "hot-1" and a.state == "firing"
                       for a in (await svc.snapshot()).alerts.values())  # fmt: skip

        await eventually(firing, timeout_s=8, every_s=0.05)
        assert time.monotonic() - t0 < 5.0  # far sooner than the 10 s interval
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await probe.aclose()
        await svc.drain()
        await svc.aclose()
        await services.aclose()


async def _subscribed(redis: Redis, channel: str) -> bool:
    return (await redis.pubsub_numsub(channel))[0][1] > 0
