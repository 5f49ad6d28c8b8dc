"""The production commands as separate processes against real services: migrate, simulate, web."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from opscenter.embedded import free_port
from opscenter.wire import ALL_TOPICS, TOPIC_LIFECYCLE, TOPIC_TELEMETRY

pytestmark = pytest.mark.slow


def _env(broker: str, valkey: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "OPSCENTER_KAFKA_URL": broker, "OPSCENTER_REDIS_URL": valkey,
            "OPSCENTER_DATA_DIR": str(data_dir), "OPSCENTER_LOG_LEVEL": "warn", **extra}  # fmt: skip


def _cli(env: dict[str, str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "opscenter.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s)  # fmt: skip


async def _count(broker: str, topic: str) -> int:
    c = AIOKafkaConsumer(bootstrap_servers=broker.split("://")[1], group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        n, idle = 0, 0
        while idle < 3:
            got = await c.getmany(timeout_ms=300)
            idle = 0 if got else idle + 1
            n += sum(len(v) for v in got.values())
        return n
    finally:
        await c.stop()


async def test_migrate_then_simulate_then_web(broker: str, valkey: str, tmp_path: Path) -> None:
    env = _env(broker, valkey, tmp_path / "var")
    out = _cli(env, "migrate")
    assert out.returncode == 0, out.stderr
    assert "migrations applied: [1, 2" in out.stdout and "topics created:" in out.stdout
    again = _cli(env, "migrate")
    assert "none (up to date)" in again.stdout and "none (all exist)" in again.stdout
    for topic in ALL_TOPICS:
        assert topic in out.stdout

    out = _cli(env, "simulate", "--resources", "20", "--publish-inventory", "--backfill-days", "0.01",
               "--backfill-only")  # fmt: skip
    assert out.returncode == 0, out.stderr
    produced = int(out.stdout.strip().rsplit(":", 1)[1])
    assert produced > 0
    assert await _count(broker, TOPIC_LIFECYCLE) == 20
    assert await _count(broker, TOPIC_TELEMETRY) > 0

    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "opscenter.cli", "web"], env={**env, "OPSCENTER_WEB_PORT": str(port)},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert web.poll() is None, web.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "web never became ready"
            time.sleep(0.3)
        checks = r.json()["checks"]
        assert all(c["ok"] for c in checks.values()), checks
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/status", timeout=5).status_code == 401
    finally:
        web.send_signal(signal.SIGTERM)
        assert web.wait(30) == 0
