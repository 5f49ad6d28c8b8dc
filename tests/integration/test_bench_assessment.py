"""A quick variant of the fee-assessment benchmark (bench/assessment.py): the harness runs, its JSON is
well formed, and the fast query and the day-by-day reference agree on the seeded year. No timing asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "assessment.py"


def test_assessment_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "assessment.json"
    # its own process: the benchmark opens a chDB path of its own, and chDB allows one path per process
    done = subprocess.run([sys.executable, str(SCRIPT), "--resources", "40", "--runs", "1", "--reference-runs", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "goal < 1 s" in done.stdout and "same runs: yes" in done.stdout
    fig = json.loads(out.read_text(encoding="utf-8"))
    assert fig["resources"] == 40 and fig["rows"]["rollup_1d"] == 40 * 365 and fig["machine"]["cpus"] and fig["version"]
    assert fig["reference_lines_s"]["same_runs"] is True
    for key in ("assessment_lines_s", "whole_assessment_s", "api_json_s"):
        assert 0 < fig[key]["min"] <= fig[key]["median"] <= fig[key]["max"]
    assert fig["output"]["runs"] == fig["output"]["lines"] + fig["output"]["exclusions"] > 0
