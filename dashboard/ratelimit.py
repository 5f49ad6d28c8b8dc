"""Per-provider token buckets for HTTP ingest, counted in samples; pure (time passed in).

A provider's bucket holds at most ``burst`` samples and refills at ``rate_per_s``. A batch
costs its number of samples (at least 1). A batch larger than the burst is let through when
the bucket is full and leaves it in debt, so the long-run rate holds for any batch size.

The buckets live in the web process: with several web replicas behind a proxy, each replica
limits on its own, so a provider's effective limit is up to ``replicas × rate`` (docs/faults.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a batch may pass; if not, whole seconds until it would (the ``Retry-After`` value)."""

    allowed: bool
    retry_after_s: int = 0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    """One token bucket per key; ``rate_per_s <= 0`` disables the limit."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, key: str, now_s: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(float(self.burst), now_s)
        elif now_s > b.updated_s:  # a clock that steps back refills nothing
            b.tokens = min(float(self.burst), b.tokens + (now_s - b.updated_s) * self.rate_per_s)
            b.updated_s = now_s
        return b

    def _wait_s(self, missing: float) -> int:
        return max(1, math.ceil(missing / self.rate_per_s))

    def check(self, key: str, now_s: float) -> Decision:
        """Would a one-sample batch pass now? (Consumes nothing: a cheap test before reading a body.)"""
        if self.rate_per_s <= 0:
            return Decision(True)
        b = self._refill(key, now_s)
        return Decision(True) if b.tokens >= 1.0 else Decision(False, self._wait_s(1.0 - b.tokens))

    def take(self, key: str, cost: int, now_s: float) -> Decision:
        """Let a batch of ``cost`` samples pass and charge it, or say how long to wait."""
        if self.rate_per_s <= 0:
            return Decision(True)
        b = self._refill(key, now_s)
        cost = max(1, cost)
        need = min(cost, self.burst)
        if b.tokens < need:
            return Decision(False, self._wait_s(need - b.tokens))
        b.tokens -= cost
        return Decision(True)

    def tokens(self, key: str, now_s: float) -> float:
        """Samples ``key`` may send right now (negative: in debt)."""
        return self._refill(key, now_s).tokens
