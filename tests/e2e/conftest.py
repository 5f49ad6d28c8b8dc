"""`opscenter up` as a subprocess, the way a user starts it, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from opscenter.embedded import free_port


#: a demo provider token: enough to read the status API while polling for readiness
AUTH = {"authorization": "Bearer demo-p-haiyun"}


@dataclass
class Up:
    """One `opscenter up` in its own working directory, on free ports; restartable."""

    cwd: Path
    resources: int = 60
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items()
               if k not in ("OPSCENTER_KAFKA_URL", "OPSCENTER_REDIS_URL", "OPSCENTER_CLICKHOUSE_DSN", "OPSCENTER_DATA_DIR")},
            "OPSCENTER_KAFKA_PORT": str(free_port()),
            "OPSCENTER_REDIS_PORT": str(free_port()),
            "OPSCENTER_WEB_PORT": str(free_port()),
            "OPSCENTER_SIMULATE_RESOURCES": str(self.resources),
        }  # fmt: skip

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.env['OPSCENTER_WEB_PORT']}"

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.env['OPSCENTER_KAFKA_PORT']}"

    @property
    def log(self) -> Path:
        return self.cwd / "up.log"

    def start(self, *args: str, timeout_s: float = 90) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opscenter.cli", "up", *args], cwd=self.cwd, env=self.env,
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-4000:]
            try:
                status = httpx.get(f"{self.base}/api/v1/status", headers=AUTH, timeout=2).json()
                if status.get("resources", 0) >= self.resources:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            assert time.monotonic() < deadline, self.log.read_text()[-4000:]
            time.sleep(0.3)

    def stop(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
