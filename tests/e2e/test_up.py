"""`opscenter up` as a user runs it: stack up, telemetry over HTTP, rollup read back, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import httpx
import orjson
import pytest

from opscenter import demo
from tests.e2e.conftest import AUTH, Up

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, dict[str, str], Path]]:
    u = Up(tmp_path_factory.mktemp("up"))
    u.start()
    yield u.proc, u.env, u.log  # type: ignore[misc]
    u.kill()


def test_banner_names_urls_and_demo_tokens(up) -> None:  # type: ignore[no-untyped-def]
    _, env, log = up
    text = log.read_text()
    assert f"http://127.0.0.1:{env['OPSCENTER_WEB_PORT']}/" in text
    assert "demo-p-haiyun" in text and "memory only" in text
    assert "/kiosk?token=demo-kiosk" in text and "admin" in text
    assert Path(log.parent / "var" / "chdb").is_dir(), "chDB lives under ./var by default"


def test_busy_port_gives_a_clear_message(up) -> None:  # type: ignore[no-untyped-def]
    _, env, log = up
    out = subprocess.run(
        [sys.executable, "-m", "opscenter.cli", "up"], cwd=log.parent / "..", env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "already in use" in out.stderr and "OPSCENTER_KAFKA_PORT" in out.stderr


def test_http_telemetry_reaches_the_minute_rollup(up) -> None:  # type: ignore[no-untyped-def]
    _, env, _ = up
    base = f"http://127.0.0.1:{env['OPSCENTER_WEB_PORT']}"
    city = demo.city(60)
    rid = next(r.resource_id for r in city.resources if r.provider_id == "p-haiyun")
    m0 = (int(datetime.now(timezone.utc).timestamp()) // 60 - 3) * 60_000
    cpus = [12.0, 48.0, 30.0, 66.0]
    body = {
        "batch_id": "e2e-1",
        "samples": [
            {"resource_id": rid, "ts": datetime.fromtimestamp((m0 + i * 15_000) / 1000, tz=timezone.utc).isoformat(),
             "cpu_pct": c, "mem_pct": 40.0 + i, "storage_pct": 55.0}
            for i, c in enumerate(cpus)
        ],
    }  # fmt: skip
    r = httpx.post(f"{base}/api/v1/telemetry", content=orjson.dumps(body),
                   headers={"authorization": "Bearer demo-p-haiyun"}, timeout=10)  # fmt: skip
    assert r.status_code == 202 and r.json()["accepted"] == 4, r.text

    deadline = time.monotonic() + 30
    while True:
        rows = httpx.get(f"{base}/api/v1/resources/{rid}/rollups", headers=AUTH,
                         params={"from_ms": m0, "to_ms": m0 + 60_000}, timeout=5).json()["rows"]  # fmt: skip
        if rows and rows[0]["sample_count"] == 4:
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.3)
    row = rows[0]
    # by hand: mean (12+48+30+66)/4 = 39; max 66; sorted 12,30,48,66 → p95 at 2.85 = 48 + 0.85*18 = 63.3
    assert row["minute_ms"] == m0
    assert row["cpu_mean"] == pytest.approx(39.0)
    assert row["cpu_max"] == pytest.approx(66.0)
    assert row["cpu_p95"] == pytest.approx(63.3, abs=1e-4)
    assert row["mem_mean"] == pytest.approx(41.5)
    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert 'opscenter_samples_consumed_total{provider="p-haiyun"}' in metrics
    assert 'opscenter_sink_batches_total{table="samples"}' in metrics


def test_sigterm_stops_everything(up) -> None:  # type: ignore[no-untyped-def]
    proc, _, log = up
    children = _children(proc.pid)
    assert len(children) >= 2, "Tansu and Valkey run as child processes"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()[-3000:]
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in children):
        assert time.monotonic() < deadline, f"orphans left: {[p for p in children if _alive(p)]}"
        time.sleep(0.2)
