"""A real `opscenter worker` killed with SIGKILL mid-stream and restarted: no row lost, none doubled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from opscenter.embedded import free_port
from opscenter.services import create_topics
from opscenter.settings import Settings
from opscenter.wire import TOPIC_LIFECYCLE, TOPIC_TELEMETRY, shard_key
from tests.integration.helpers import delivered, telemetry

pytestmark = pytest.mark.slow

N_RES, N_MSG, PER_MSG = 50, 600, 40  # 24,000 samples
M0 = (int(datetime.now(timezone.utc).timestamp() * 1000) // 60_000 - 60) * 60_000


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "opscenter.cli", "worker"], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT
    )


async def _status(port: int) -> dict:
    try:
        async with httpx.AsyncClient(timeout=2) as c:
            return (await c.get(f"http://127.0.0.1:{port}/api/v1/status")).json()
    except (httpx.HTTPError, ValueError):
        return {}


def _chdb_counts(data_dir: Path) -> dict:
    """Open the worker's chDB path in a separate process (one path per process) and count."""
    code = (
        "import json, clickhouse_connect as cc; "
        f"c = cc.get_client(dsn='chdb://{data_dir / 'chdb'}', database='opscenter'); "
        "q = lambda s: c.query(s).result_rows[0][0]; "
        "print(json.dumps({'rows': q('SELECT count() FROM samples'), "
        "'unique': q('SELECT uniqExact(resource_id, ts) FROM samples'), "
        "'minute': q('SELECT sum(samples) FROM rollup_1m'), 'day': q('SELECT sum(samples) FROM rollup_1d')}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


async def test_sigkill_mid_stream_loses_and_doubles_nothing(broker: str, valkey: str, tmp_path: Path) -> None:
    web_port = free_port()
    settings = Settings(kafka_url=broker, redis_url=valkey, topic_partitions=4)
    await create_topics(settings)
    env = {
        **os.environ,
        "OPSCENTER_KAFKA_URL": broker,
        "OPSCENTER_REDIS_URL": valkey,
        "OPSCENTER_DATA_DIR": str(tmp_path / "w"),
        "OPSCENTER_WORKER_WEB_PORT": str(web_port),
        "OPSCENTER_TOPIC_PARTITIONS": "4",
        "OPSCENTER_APP_ID": "crash-test",
        "OPSCENTER_INGEST_BATCH_MESSAGES": "20",
        "OPSCENTER_COMMIT_INTERVAL_S": "1.0",
        "OPSCENTER_LOG_LEVEL": "warn",
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap(), acks="all")
    await producer.start()
    last_offset: dict[int, int] = {}
    try:
        for i in range(N_RES):
            await producer.send_and_wait(TOPIC_LIFECYCLE, delivered(f"r{i:03d}", "p1"), key=f"r{i:03d}".encode())
        log = tmp_path / "worker.log"
        worker = _start_worker(env, log)

        async def send_batches(lo: int, hi: int) -> None:
            for n in range(lo, hi):
                rid = f"r{n % N_RES:03d}"
                samples = [(rid, M0 + (n // N_RES * PER_MSG + k) * 1000, 10.0 + k, 20.0, 30.0) for k in range(PER_MSG)]
                md = await producer.send_and_wait(
                    TOPIC_TELEMETRY, telemetry("p1", f"b{n}", samples), key=shard_key("p1", rid)
                )
                last_offset[md.partition] = max(last_offset.get(md.partition, -1), md.offset)

        await send_batches(0, N_MSG // 2)
        deadline = time.monotonic() + 90
        while (await _status(web_port)).get("samples", 0) < 2000:
            assert time.monotonic() < deadline, f"worker never stored samples; log: {log.read_text()[-2000:]}"
            assert worker.poll() is None, log.read_text()[-3000:]
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGKILL)  # mid-stream: a backlog remains, offsets uncommitted
        worker.wait(10)
        await send_batches(N_MSG // 2, N_MSG)

        t_restart = time.monotonic()
        worker = _start_worker(env, log)
        expected = N_MSG * PER_MSG
        deadline = time.monotonic() + 120
        while (await _status(web_port)).get("samples", 0) < expected:
            assert time.monotonic() < deadline, f"stuck at {await _status(web_port)}; log: {log.read_text()[-2000:]}"
            assert worker.poll() is None, log.read_text()[-3000:]
            await asyncio.sleep(0.2)
        recovery_s = time.monotonic() - t_restart

        # the committed offsets must catch up with the consumed position (Faust commit stall)
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap())
        await admin.start()
        try:
            tps = [TopicPartition(TOPIC_TELEMETRY, p) for p in last_offset]
            deadline = time.monotonic() + 30
            while True:
                committed = await admin.list_consumer_group_offsets("crash-test", partitions=tps)
                lagging = {tp.partition: (om.offset, last_offset[tp.partition] + 1)
                           for tp, om in committed.items() if om.offset != last_offset[tp.partition] + 1}  # fmt: skip
                if not lagging:
                    break
                assert time.monotonic() < deadline, f"committed offsets stuck behind: {lagging}"
                await asyncio.sleep(0.5)
        finally:
            await admin.close()
        await asyncio.sleep(2)  # anything doubled would land now
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(40) == 0, log.read_text()[-3000:]
    finally:
        await producer.stop()
        if worker.poll() is None:
            worker.kill()

    counts = _chdb_counts(tmp_path / "w")
    assert counts == {"rows": expected, "unique": expected, "minute": expected, "day": expected}
    print(f"recovery after SIGKILL: {recovery_s:.1f}s to store all {expected} samples")
