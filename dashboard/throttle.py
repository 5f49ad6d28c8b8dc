"""Login throttling: failed logins per username and per client address, counted in Redis.

Each failure is a member of a Redis sorted set (score: epoch ms) per username and per address;
members older than ``window_s`` fall out (a sliding window). Once a set holds ``max_*``
failures, further logins for that name or from that address are refused (HTTP 429 with
``Retry-After``: until enough old failures have left the window) *before* the password is
checked, so guessing stops. A successful login clears its username's failures (not the
address's: one valid account must not reset a guessing address). Counting in Redis lets every
web process share it.

If Redis is unreachable the login is allowed and the miss is counted
(``opscenter_login_throttle_errors_total``): being able to log in during an incident matters
more than throttling during a Redis outage.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from opscenter import metrics

log = logging.getLogger(__name__)

PREFIX = "opscenter:login:fail:"
MAX_PER_USER = 5
MAX_PER_IP = 20  # higher: offices behind one NAT share an address
WINDOW_S = 15 * 60

throttled = Counter("opscenter_login_throttled_total", "Logins refused by the throttle", ["by"], registry=metrics.REGISTRY)
throttle_errors = Counter(
    "opscenter_login_throttle_errors_total", "Logins not throttled because Redis was unavailable",
    registry=metrics.REGISTRY,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a login is refused: ``by`` ("user" or "ip") and whole seconds until it may try again."""

    by: str
    retry_after_s: int


def _key(kind: str, value: str) -> str:
    return f"{PREFIX}{kind}:{value.strip().lower()[:200]}"


class LoginThrottle:
    """Counts failed logins per username and address in Redis; says when to refuse."""

    def __init__(
        self, redis: Any, max_per_user: int = MAX_PER_USER, max_per_ip: int = MAX_PER_IP, window_s: int = WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.redis, self.max_per_user, self.max_per_ip, self.window_s = redis, max_per_user, max_per_ip, window_s
        self.clock = clock

    def _limits(self, username: str, ip: str) -> list[tuple[str, str, int]]:
        out = [("user", _key("user", username), self.max_per_user)]
        if ip:
            out.append(("ip", _key("ip", ip), self.max_per_ip))
        return out

    async def check(self, username: str, ip: str) -> Refusal | None:
        """A :class:`Refusal` if this name or address has too many recent failures, else None."""
        now_ms = int(self.clock() * 1000)
        limits = self._limits(username, ip)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for _, key, _ in limits:
                pipe.zremrangebyscore(key, 0, now_ms - self.window_s * 1000)
                pipe.zrange(key, 0, -1, withscores=True)
            results = await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - fail open, counted (module docstring)
            throttle_errors.inc()
            log.warning("login throttle unavailable (%s): login not throttled", exc)
            return None
        worst: Refusal | None = None
        for (by, _, limit), failures in zip(limits, results[1::2]):
            if len(failures) < limit:
                continue
            # the failure that must leave the window before the count drops below the limit
            _, at_ms = failures[len(failures) - limit]
            wait_s = max(1, -(-(int(at_ms) + self.window_s * 1000 - now_ms) // 1000))
            if worst is None or wait_s > worst.retry_after_s:
                worst = Refusal(by, wait_s)
        if worst is not None:
            throttled.labels(worst.by).inc()
        return worst

    async def failed(self, username: str, ip: str) -> None:
        """Count one failed login for this name and address."""
        now_ms = int(self.clock() * 1000)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for _, key, _ in self._limits(username, ip):
                pipe.zadd(key, {f"{now_ms}:{secrets.token_hex(4)}": now_ms})
                pipe.expire(key, self.window_s)
            await pipe.execute()
        except Exception as exc:  # noqa: BLE001
            throttle_errors.inc()
            log.warning("login throttle unavailable (%s): failure not counted", exc)

    async def succeeded(self, username: str) -> None:
        """A successful login clears the username's failures."""
        try:
            await self.redis.delete(_key("user", username))
        except Exception as exc:  # noqa: BLE001
            throttle_errors.inc()
            log.warning("login throttle unavailable (%s): failures of %r not cleared", exc, username)
