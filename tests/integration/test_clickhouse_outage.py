"""ClickHouse unavailable for ~10 s while telemetry flows through the real Faust agent (docs/faults.md).

Embedded chDB runs inside the process and cannot be stopped from outside, so the outage is the
store's fault-injection switch (:meth:`opscenter.store.AsyncStore.inject_outage`): every
ClickHouse call fails in its thread, as a refused connection would. While it lasts the ingest
agent holds its one batch and retries it, the consumer stops (committed offsets frozen, lag
grows, the in-memory buffer stays under its bound, the rest stays in Kafka), the metrics and
/readyz say ClickHouse is down; after the release every sample lands exactly once.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from faust.contrib.asgi import faust_app_running

from dashboard.app import build_worker_app
from opscenter.metrics import REGISTRY
from opscenter.services import create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import TOPIC_TELEMETRY, LifecycleEvent, Spec, shard_key
from streams.app import build_faust_app
from tests.integration.helpers import eventually, telemetry

RESOURCES = [f"r{i}" for i in range(8)]
PER_MSG = 40  # samples per message (~5 KB)
BEFORE, DURING = 20, 2000  # messages before and during the outage
STREAM_BUFFER = 200  # Faust's stream_buffer_maxsize for this test (production: 4096)
BATCH = 50  # OPSCENTER_INGEST_BATCH_MESSAGES
OUTAGE_S = 10.0
# (BEFORE + DURING) / 8 resources x 40 samples at 1 s: each resource's samples span ~2.8 h, ending in the past
T0 = (int(datetime.now(timezone.utc).timestamp() * 1000) // 60_000 - 4 * 60) * 60_000


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def message(n: int) -> tuple[bytes, bytes]:
    """Message n: one resource, PER_MSG samples with their own timestamps (no two messages share one)."""
    rid = RESOURCES[n % len(RESOURCES)]
    first = (n // len(RESOURCES)) * PER_MSG
    samples = [(rid, T0 + (first + k) * 1000, float(k % 100), 20.0, 30.0) for k in range(PER_MSG)]
    return shard_key("p1", rid), telemetry("p1", f"outage-{n}", samples)


async def produce(s: Settings, lo: int, hi: int) -> dict[int, int]:
    """Produce messages [lo, hi); the highest offset per partition."""
    p = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap(), acks="all", linger_ms=5)
    await p.start()
    try:
        futures = [await p.send(TOPIC_TELEMETRY, value=v, key=k) for k, v in map(message, range(lo, hi))]
        last: dict[int, int] = {}
        for md in await asyncio.gather(*futures):
            last[md.partition] = max(last.get(md.partition, -1), md.offset)
        return last
    finally:
        await p.stop()


async def test_clickhouse_outage_back_pressures_and_loses_nothing(settings: Settings) -> None:
    s = settings.model_copy(update={"ingest_batch_messages": BATCH})
    await create_topics(s)
    services = await open_services(s)
    for rid in RESOURCES:
        services.registry.apply(LifecycleEvent(f"e-{rid}", rid, "delivered", datetime.now(timezone.utc), "p1",
                                               spec=Spec(4, 8, 100)))  # fmt: skip
    tps = [TopicPartition(TOPIC_TELEMETRY, p) for p in range(s.topic_partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap())
    await admin.start()
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_worker_app(services)), base_url="http://w")

    async def committed() -> dict[int, int]:
        got = await admin.list_consumer_group_offsets(s.app_id, partitions=tps)
        return {tp.partition: om.offset for tp, om in got.items()}

    async def stored() -> int:  # past the outage switch: what really is in ClickHouse
        rows = await asyncio.to_thread(lambda: services.store.client.query("SELECT count() FROM samples").result_rows)
        return int(rows[0][0])

    async def stored_is(n: int) -> bool:
        return await stored() == n

    fapp = build_faust_app(services)
    fapp.conf.stream_buffer_maxsize = STREAM_BUFFER  # a small buffer: the bound is reached within the test
    try:
        async with faust_app_running(fapp, stop_timeout=20):
            # 1. ClickHouse up: stored and committed
            last = await produce(s, 0, BEFORE)
            await eventually(lambda: stored_is(BEFORE * PER_MSG), timeout_s=60)

            async def all_committed() -> bool:
                c = await committed()
                return all(c.get(p, -1) == o + 1 for p, o in last.items())

            await eventually(all_committed, timeout_s=30)
            frozen = await committed()
            errors_before = metric("opscenter_sink_errors_total", table="samples")
            rss_before = rss_mb()

            try:
                # 2. ClickHouse down for OUTAGE_S while 2,000 messages (80,000 samples) arrive
                services.store.inject_outage("test")
                t_down = time.monotonic()
                during = await produce(s, BEFORE, BEFORE + DURING)
                end = {p: max(o, last.get(p, -1)) for p, o in during.items()}
                ready = await web.get("/readyz")
                assert ready.status_code == 503 and ready.json()["checks"]["clickhouse"]["ok"] is False
                assert ready.json()["checks"]["broker"]["ok"] and ready.json()["checks"]["redis"]["ok"]
                peak_buffer, peak_rss = 0, rss_before
                while time.monotonic() - t_down < OUTAGE_S:
                    await asyncio.sleep(0.5)
                    read = fapp.consumer._read_offset  # noqa: SLF001 - last offset handed to the agent's buffer
                    marks = services.ingest._marks or {}  # noqa: SLF001 - last offset stored per partition
                    buffered = sum((read.get(tp) or -1) - marks.get((TOPIC_TELEMETRY, tp.partition), -1) for tp in tps)
                    peak_buffer, peak_rss = max(peak_buffer, buffered), max(peak_rss, rss_mb())
                assert await committed() == frozen, "offsets were committed for samples that were not stored"
                lag = sum(end[p] + 1 - frozen[p] for p in end)
                assert lag == DURING  # the consumer group is behind by everything sent during the outage
                assert await stored() == BEFORE * PER_MSG
                assert metric("opscenter_clickhouse_up") == 0
                assert metric("opscenter_sink_waiting_batches", table="samples") == 1  # the one batch held
                assert metric("opscenter_sink_errors_total", table="samples") > errors_before
                # bounded: Faust's stream buffer + the batch in hand + one fetch (1 MiB) per partition;
                # nothing like the 2,000 messages waiting in Kafka
                message_bytes = len(message(0)[1])
                bound = STREAM_BUFFER + BATCH + len(tps) * (fapp.conf.consumer_max_fetch_size // message_bytes + 1)
                assert 0 < peak_buffer <= bound < DURING, (peak_buffer, bound)
                assert peak_rss - rss_before < 64, f"RSS grew {peak_rss - rss_before:.0f} MB during the outage"
            finally:  # a failed check must not leave the agent stuck (Faust would wait for it at stop)
                services.store.release_outage()

            # 3. ClickHouse back: everything lands once, the offsets catch up, the metrics recover
            t_up = time.monotonic()
            total = (BEFORE + DURING) * PER_MSG
            await eventually(lambda: stored_is(total), timeout_s=90)
            catch_up_s = time.monotonic() - t_up

            async def caught_up() -> bool:
                c = await committed()
                return all(c.get(p, -1) == o + 1 for p, o in end.items())

            await eventually(caught_up, timeout_s=30)
            assert (await web.get("/readyz")).status_code == 200
            assert metric("opscenter_clickhouse_up") == 1
            assert metric("opscenter_sink_waiting_batches", table="samples") == 0
            await asyncio.sleep(1.0)  # anything doubled would land now

        assert await stored() == total
        distinct = await services.store.query("SELECT uniqExact(resource_id, ts) FROM samples")
        assert distinct[0][0] == total
        rollup = await services.store.query("SELECT sum(samples) FROM rollup_1m")
        assert rollup[0][0] == total
        print(f"outage {OUTAGE_S:.0f}s: peak buffer {peak_buffer} messages (bound {bound}, {DURING} waited in "
              f"Kafka), RSS +{peak_rss - rss_before:.1f} MB, all {total} samples stored {catch_up_s:.1f}s "
              "after the release")  # fmt: skip
    finally:
        services.store.release_outage()
        await web.aclose()
        await admin.close()
        await services.aclose()
