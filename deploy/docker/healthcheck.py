#!/usr/bin/env python3
"""Container health probe for the opscenter image: GET /healthz on this process's port.

    opscenter-healthcheck [web|worker|migrate|PORT] [PATH]

Without an argument the role is read from PID 1's command line (``opscenter worker`` ->
the worker's port), so the image's HEALTHCHECK is right for every subcommand. Ports come
from the one settings object (OPSCENTER_WEB_PORT, OPSCENTER_WORKER_WEB_PORT). Exit 0 when
the endpoint answers 2xx, 1 otherwise. Stdlib + opscenter only: no curl in the image.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

ROLES = ("web", "worker", "up", "migrate", "simulate")


def role_of_pid1() -> str:
    try:
        argv = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "web"
    for token in argv:
        if token.decode(errors="replace") in ROLES:
            return token.decode()
    return "web"


def main(argv: list[str]) -> int:
    role = argv[1] if len(argv) > 1 else role_of_pid1()
    path = argv[2] if len(argv) > 2 else "/healthz"
    if role in ("migrate", "simulate"):
        return 0  # one-shot / client processes serve no HTTP
    if role.isdigit():
        port = int(role)
        host = "127.0.0.1"
    else:
        from opscenter.settings import load_settings

        settings = load_settings()
        port = settings.worker_web_port if role == "worker" else settings.web_port
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:  # noqa: S310 - fixed local URL
            return 0 if 200 <= resp.status < 300 else 1
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
