"""Quick variants of the benchmark scenarios: the harness works and its results are well formed.

Timings are not asserted here (these machines are shared and noisy); the figures live in
bench/results/ and the README.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from opscenter import bench

pytestmark = pytest.mark.slow


def _saved(out: Path, scenario: str) -> dict:
    (path,) = out.glob(f"{scenario}-*.json")
    doc = json.loads(path.read_text())
    assert doc["scenario"] == scenario and doc["machine"]["cpus"] and doc["version"]
    return doc


def test_pipeline_smoke(tmp_path: Path) -> None:
    # its own process: the pipeline opens a chDB path, and chDB allows one path per process
    out = subprocess.run(
        [sys.executable, "-m", "opscenter.cli", "bench", "pipeline", "--samples", "20000", "--resources", "200",
         "--runs", "2", "--out", str(tmp_path)], capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "end to end" in out.stdout and "goal 400,000" in out.stdout
    fig = json.loads(next(tmp_path.glob("pipeline-*.json")).read_text())
    assert fig["samples"] >= 19_000
    assert fig["end_to_end_samples_s"] > 0 and fig["reference_samples_s"] > 0 and 0 < fig["ratio"]
    assert fig["storage_ceiling_samples_s"] > 0 and "storage" in out.stdout
    # the insert chain: at least one insert, in flight for part of the run at most
    assert fig["samples_inserts"] >= 1 and 0 < fig["samples_insert_s"] <= fig["elapsed_s"] + 0.5
    assert "into samples, in flight" in out.stdout
    cpu = fig["cpu_s_per_million"]  # what the run cost the machine, beside what the goal allows
    assert cpu["worker"] > 0 and cpu["storage_alone"] > 0 and cpu["broker_and_redis"] >= 0
    assert 0 < cpu["event_loop"] < cpu["worker"] and "event loop" in out.stdout  # part of the worker, not all of it
    assert cpu["budget_at_goal"] == round(fig["cores"] * 1e6 / 400_000, 2) and "core-s per 1M" in out.stdout
    # two runs, each in its own process: the lower of the two is reported, both are kept
    assert fig["runs"] == 2 and len(fig["end_to_end_runs"]) == 2 and len(fig["ratio_runs"]) == 2
    assert fig["end_to_end_samples_s"] == min(fig["end_to_end_runs"]) and "median of 2 runs" in out.stdout
    _saved(tmp_path, "pipeline")


def test_fanout_smoke(tmp_path: Path) -> None:
    fig = bench.main("fanout", clients=[20], seconds=2.0, out_dir=tmp_path)
    (level,) = fig["levels"]
    assert level["connected"] == 20 and level["errors"] == 0 and level["deliveries"] > 0
    assert level["p50_ms"] <= level["p99_ms"] <= level["max_ms"]
    _saved(tmp_path, "fanout")


def test_memory_smoke(tmp_path: Path) -> None:
    fig = bench.main("memory", levels=[500], out_dir=tmp_path)
    (level,) = fig["levels"]
    assert level["resources"] == 500 and level["rss_mib"] > level["baseline_mib"] > 0
    _saved(tmp_path, "memory")


def test_alert_latency_smoke(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "opscenter.cli", "bench", "alert-latency", "--samples", "20000", "--levels", "10",
         "--seconds", "6", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "capacity (pipeline end to end, this run)" in out.stdout
    fig = _saved(tmp_path, "alert-latency")
    (level,) = fig["levels"]
    # every breaching sample became an alert on the websocket, and the figures are ordered
    assert level["breaches"] >= 4 and level["alerts_seen"] == level["breaches"]
    assert 0 < level["p50_ms"] <= level["p99_ms"] <= level["max_ms"]
    assert fig["capacity_samples_s"] > 0 and level["achieved_samples_s"] > 0
