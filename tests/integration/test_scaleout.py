"""Two, then three `opscenter worker` processes on one broker and ONE ClickHouse; one SIGKILLed mid-stream.

Several workers must share one ClickHouse, as in production: the replay protection
(``sink_offsets``) and the insert deduplication tokens only work if the worker that takes over a
partition sees what the previous owner stored. chDB cannot be opened by two processes, so the
ClickHouse here is ``tests/integration/chdb_http.py``: chDB (the ClickHouse engine) in a process
of its own behind the ClickHouse HTTP interface; the workers reach it through clickhouse-connect's
HTTP client (``OPSCENTER_CLICKHOUSE_DSN=http://…``), exactly as they reach a ClickHouse server.
docs/faults.md, "Several workers, one ClickHouse".

The workers split the partitions of telemetry.v1 (each gets some, the group covers all); a third
worker joining takes partitions over; the SIGKILLed worker's partitions go to the others. The
sample count, the distinct (resource, ts) count, per-resource counts and the 1-minute and 1-day
rollups equal exactly what was produced.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from opscenter.embedded import _die_with_parent, free_port
from opscenter.epochs import new_epoch
from opscenter.services import create_topics
from opscenter.settings import Settings
from opscenter.store import AsyncStore, connect, migrate
from opscenter.wire import TOPIC_LIFECYCLE, TOPIC_TELEMETRY, shard_key
from tests.integration.helpers import delivered, telemetry

pytestmark = pytest.mark.slow

PARTITIONS = 6
N_RES, PER_MSG = 60, 20
PHASE_MSGS = 240  # messages per phase (4,800 samples)
M0 = (int(datetime.now(timezone.utc).timestamp() * 1000) // 60_000 - 180) * 60_000  # 3 h ago


def provider_of(rid: str) -> str:
    """Four providers: one provider's shard keys alone would leave some of the 6 partitions empty."""
    return f"p{int(rid[1:]) % 4 + 1}"


def sample_rows(n: int) -> tuple[str, list[tuple[str, int, float, float, float]]]:
    """Message n: PER_MSG samples of one resource, each (resource, ts) used once in the whole test."""
    rid = f"s{n % N_RES:03d}"
    first = (n // N_RES) * PER_MSG
    return rid, [(rid, M0 + (first + k) * 1000, float(k), 20.0, 30.0) for k in range(PER_MSG)]


class Cluster:
    """The worker processes of one consumer group, each with its own data dir and metrics port."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.workers: dict[str, tuple[subprocess.Popen, int]] = {}

    def start(self, name: str) -> None:
        port = free_port()
        env = {**self.env, "OPSCENTER_DATA_DIR": str(self.tmp / name), "OPSCENTER_WORKER_WEB_PORT": str(port)}
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen([sys.executable, "-m", "opscenter.cli", "worker"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # fmt: skip
        self.workers[name] = (proc, port)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def check_alive(self) -> None:
        for name, (proc, _) in self.workers.items():
            if proc.returncode is None:
                assert proc.poll() is None, f"worker {name} died: {self.log(name)}"

    async def metrics(self, name: str) -> str:
        port = self.workers[name][1]
        try:
            async with httpx.AsyncClient(timeout=2) as c:
                return (await c.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.HTTPError:
            return ""

    async def consumed(self, name: str) -> float:
        """Telemetry messages this worker has processed (its own /metrics)."""
        for line in (await self.metrics(name)).splitlines():
            if line.startswith(f'opscenter_messages_consumed_total{{topic="{TOPIC_TELEMETRY}"}}'):
                return float(line.split()[-1])
        return 0.0

    async def partitions(self, name: str) -> set[int]:
        """telemetry.v1 partitions the worker owns now: its consumer-lag gauge lists exactly those.

        (Tansu's DescribeGroups returns no member assignments, so the group cannot tell.)
        """
        parts = set()
        for line in (await self.metrics(name)).splitlines():
            if line.startswith("opscenter_consumer_lag_messages{") and f'topic="{TOPIC_TELEMETRY}"' in line:
                parts.add(int(re.search(r'partition="(\d+)"', line).group(1)))  # type: ignore[union-attr]
        return parts

    def alive(self) -> list[str]:
        return [n for n, (proc, _) in self.workers.items() if proc.poll() is None]

    def stop_all(self) -> None:
        for proc, _ in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.workers.values():
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def shared_clickhouse(tmp_path: Path) -> Iterator[str]:
    """One ClickHouse for several processes: chDB behind the HTTP interface (chdb_http.py); its DSN."""
    port = free_port()
    with open(tmp_path / "clickhouse.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.chdb_http", "--path", str(tmp_path / "ch"), "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,  # nothing left behind
        )  # fmt: skip
    dsn = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                clickhouse_connect.get_client(dsn=dsn).close()
                break
            except Exception:  # noqa: BLE001 - still starting
                assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "clickhouse.log").read_text()
                time.sleep(0.2)
        yield dsn
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def test_workers_split_partitions_take_over_and_count_exactly(
    broker: str, valkey: str, shared_clickhouse: str, tmp_path: Path
) -> None:
    group = f"scale-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:8]  # batch ids unique in the session's Valkey
    settings = Settings(kafka_url=broker, redis_url=valkey, clickhouse_dsn=shared_clickhouse,
                        clickhouse_database="scale", topic_partitions=PARTITIONS, app_id=group, demo=False)  # fmt: skip
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPSCENTER_")},
        "OPSCENTER_KAFKA_URL": broker, "OPSCENTER_REDIS_URL": valkey,
        "OPSCENTER_CLICKHOUSE_DSN": settings.clickhouse_dsn, "OPSCENTER_CLICKHOUSE_DATABASE": "scale",
        "OPSCENTER_TOPIC_PARTITIONS": str(PARTITIONS), "OPSCENTER_APP_ID": group, "OPSCENTER_DEMO": "false",
        "OPSCENTER_INGEST_BATCH_MESSAGES": "20", "OPSCENTER_COMMIT_INTERVAL_S": "1.0", "OPSCENTER_LOG_LEVEL": "warn",
    }  # fmt: skip
    cluster = Cluster(env, tmp_path)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap(), acks="all", linger_ms=5)
    sent = 0
    try:
        # `opscenter migrate` does this once before the workers start (compose: the one-shot service)
        client = await asyncio.to_thread(connect, settings)
        await asyncio.to_thread(migrate, client, settings)
        await create_topics(settings)
        await new_epoch(AsyncStore(client), TOPIC_TELEMETRY)
        await producer.start()
        for i in range(N_RES):
            rid = f"s{i:03d}"
            await producer.send_and_wait(TOPIC_LIFECYCLE, delivered(rid, provider_of(rid)), key=rid.encode())

        async def send() -> Any:
            """Send the next message (numbers taken before the await: two senders never share one)."""
            nonlocal sent
            n, sent = sent, sent + 1
            rid, rows = sample_rows(n)
            pid = provider_of(rid)
            return await producer.send(TOPIC_TELEMETRY, telemetry(pid, f"{run}-{n}", rows), key=shard_key(pid, rid))

        async def send_phase(count: int, per_s: float | None = None) -> None:
            for _ in range(count):
                await send()
                if per_s:
                    await asyncio.sleep(1 / per_s)
            await producer.flush()

        def q(text: str) -> Any:
            return client.query(text).result_rows

        async def stored() -> int:
            return int((await asyncio.to_thread(q, "SELECT count() FROM samples"))[0][0])

        async def wait_stored(n: int, timeout_s: float) -> float:
            t0 = time.monotonic()
            while (got := await stored()) < n:
                assert time.monotonic() - t0 < timeout_s, f"stored {got} of {n}"
                cluster.check_alive()
                await asyncio.sleep(0.25)
            return time.monotonic() - t0

        async def settled(timeout_s: float = 60) -> dict[str, set[int]]:
            """Partitions per live worker, once every worker owns some and together they own each once."""
            t0 = time.monotonic()
            while True:
                got = {name: await cluster.partitions(name) for name in cluster.alive()}
                parts = sorted(p for ps in got.values() for p in ps)
                if all(got.values()) and parts == list(range(PARTITIONS)):
                    return got
                assert time.monotonic() - t0 < timeout_s, f"partitions never split over {list(got)}: {got}"
                cluster.check_alive()
                await asyncio.sleep(0.5)

        # 1. two workers split the partitions
        t_start = time.monotonic()
        cluster.start("w1")
        cluster.start("w2")
        await send_phase(PHASE_MSGS)
        await wait_stored(sent * PER_MSG, 90)
        two = await settled()
        for name in ("w1", "w2"):
            assert await cluster.consumed(name) > 0, f"{name} processed nothing"
        print(f"2 workers: {two} ({time.monotonic() - t_start:.1f}s)")

        # 2. a third worker joins while telemetry flows: it takes partitions over
        cluster.start("w3")
        await send_phase(PHASE_MSGS, per_s=40)
        await wait_stored(sent * PER_MSG, 60)
        three = await settled()
        assert len(three) == 3
        before_w3 = await cluster.consumed("w3")
        await send_phase(PHASE_MSGS)
        await wait_stored(sent * PER_MSG, 60)
        assert await cluster.consumed("w3") > before_w3, "w3 holds partitions but processed nothing"
        print(f"3 workers: {three}")

        # 3. SIGKILL w1 mid-stream; its partitions go to w2 and w3, counts stay exact
        flow = asyncio.create_task(send_phase(PHASE_MSGS * 2, per_s=40))
        await asyncio.sleep(2.0)
        w1 = cluster.workers["w1"][0]
        w1.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        w1.wait(10)
        # the first message per partition produced after the kill: hand-over is done when every
        # partition has stored one (the killed worker's partitions only after the rebalance)
        first_after: dict[int, int] = {}
        for _ in range(N_RES * 2):
            md = await (await send())
            first_after.setdefault(md.partition, md.offset)
            if len(first_after) == PARTITIONS:
                break
        assert len(first_after) == PARTITIONS
        while True:
            done = dict(await asyncio.to_thread(q, "SELECT src_partition, max(src_offset) FROM samples GROUP BY 1"))
            if all(done.get(p, -1) >= o for p, o in first_after.items()):
                break
            assert time.monotonic() - t_kill < 60, f"partitions not handed over: {done} vs {first_after}"
            cluster.check_alive()
            await asyncio.sleep(0.2)
        handover_s = time.monotonic() - t_kill
        await flow
        survivors = await settled()
        assert set(survivors) == {"w2", "w3"} and three["w1"] <= survivors["w2"] | survivors["w3"], survivors
        await wait_stored(sent * PER_MSG, 60)
        await asyncio.sleep(2.0)  # anything replayed twice would land now
        cluster.stop_all()
        for name in ("w2", "w3"):
            assert cluster.workers[name][0].returncode == 0, cluster.log(name)
    finally:
        cluster.stop_all()
        await producer.stop()

    total = sent * PER_MSG
    counts = q("SELECT count(), uniqExact(resource_id, ts) FROM samples")[0]
    assert counts == (total, total), f"lost or doubled: {counts} vs {total}"
    per_res = dict(q("SELECT resource_id, count() FROM samples GROUP BY resource_id"))
    expected: dict[str, int] = {}
    for n in range(sent):
        expected[sample_rows(n)[0]] = expected.get(sample_rows(n)[0], 0) + PER_MSG
    assert per_res == expected
    assert q("SELECT sum(samples) FROM rollup_1m")[0][0] == total
    assert q("SELECT sum(samples) FROM rollup_1d")[0][0] == total
    letters = q("SELECT reason, count() FROM deadletters FINAL GROUP BY reason")
    assert letters == [], f"every message was valid and sent once: {letters}"
    print(f"SIGKILL hand-over: {handover_s:.1f}s until every partition stored new telemetry again; "
          f"{sent} messages, {total} samples, exact")  # fmt: skip
