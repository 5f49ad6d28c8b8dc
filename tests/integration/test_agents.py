"""The Faust agents end to end on the real broker: lifecycle → registry, telemetry → chDB, dead letters."""

from __future__ import annotations

from datetime import datetime, timezone

from faust.contrib.asgi import faust_app_running

from opscenter.services import create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import TOPIC_LIFECYCLE, TOPIC_TELEMETRY, shard_key
from streams.app import build_faust_app
from tests.integration.helpers import delivered, eventually, produce, telemetry

M0 = (int(datetime.now(timezone.utc).timestamp() * 1000) // 60_000 - 5) * 60_000


async def test_agents_register_ingest_and_dead_letter(settings: Settings) -> None:
    await create_topics(settings)
    services = await open_services(settings)
    try:
        app = build_faust_app(services)
        async with faust_app_running(app, stop_timeout=20):
            await produce(settings, TOPIC_LIFECYCLE, [(f"r{i}".encode(), delivered(f"r{i}", "p1")) for i in range(20)])
            await eventually(lambda: _ready(services, 20))
            batches = [
                (shard_key("p1", f"r{i}"), telemetry("p1", f"b{i}-{k}", [(f"r{i}", M0 + k * 15_000, 50.0, 40.0, 30.0)]))
                for i in range(20) for k in range(4)
            ]  # fmt: skip
            batches.append((b"p1/0", telemetry("p1", "bad", [("r1", M0, 101.0, 1, 1), ("ghost", M0, 1, 1, 1)])))
            batches.append((b"p1/0", b"{not json"))
            await produce(settings, TOPIC_TELEMETRY, batches)

            async def stored() -> bool:
                n = (await services.store.query("SELECT count() FROM samples"))[0][0]
                d = (await services.store.query("SELECT count() FROM deadletters FINAL"))[0][0]
                return n == 80 and d == 3

            await eventually(stored)
            reasons = await services.store.query("SELECT reason, count() FROM deadletters FINAL GROUP BY reason ORDER BY reason")
            assert reasons == [("out_of_range", 1), ("unparseable", 1), ("unregistered_resource", 1)]
            inv = await services.store.query("SELECT count(), uniqExact(provider_id) FROM inventory FINAL")
            assert inv == [(20, 1)]
            minute = await services.store.query(
                "SELECT sum(samples), sum(cpu_sum) / sum(samples) FROM rollup_1m WHERE resource_id = 'r3'"
            )
            assert minute == [(4, 50.0)]
    finally:
        await services.aclose()


async def _ready(services, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(services.registry) >= n
