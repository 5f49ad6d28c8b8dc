"""Live 1-minute event-time windows per resource, with allowed lateness; pure (time passed in).

Watermarks are kept per provider (each provider streams on its own clock, and a backfill
runs in the past): a minute window of a provider closes when that provider's newest event
time has moved past the window's end by the allowed lateness, or when the provider has
been quiet (wall clock) for longer than the lateness. A sample for a window that already
closed is *late*: it is still stored (ClickHouse rollups include it) and counted, but it no
longer changes the live rollup that was already published.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

MINUTE_MS = 60_000


def p95(values: list[float]) -> float:
    """95th percentile by linear interpolation (numpy's default, ClickHouse quantileExactInclusive)."""
    return quantile(values, 0.95)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class MinuteRollup:
    resource_id: str
    provider_id: str
    minute_ms: int
    samples: int
    cpu_mean: float
    cpu_max: float
    cpu_p95: float
    mem_mean: float
    mem_max: float
    mem_p95: float
    storage_mean: float
    storage_max: float
    storage_p95: float


def summarize(resource_id: str, provider_id: str, minute_ms: int, cols: list[list[float]]) -> MinuteRollup:
    cpu, mem, sto = cols
    n = len(cpu)
    return MinuteRollup(
        resource_id, provider_id, minute_ms, n,
        sum(cpu) / n, max(cpu), p95(cpu),
        sum(mem) / n, max(mem), p95(mem),
        sum(sto) / n, max(sto), p95(sto),
    )  # fmt: skip


class MinuteWindows:
    """Open 1-minute windows of every resource; closed windows come out as :class:`MinuteRollup`."""

    def __init__(self, allowed_lateness_ms: int = 120_000) -> None:
        self.lateness_ms = allowed_lateness_ms
        # (provider, minute) -> resource -> [cpu[], mem[], storage[]]; closing walks groups, not resources
        self._open: dict[tuple[str, int], dict[str, list[list[float]]]] = {}
        self._watermark: dict[str, int] = {}  # provider -> newest event time seen
        self._seen_wall: dict[str, int] = {}  # provider -> wall clock of its last sample
        self.late: dict[str, int] = defaultdict(int)  # provider -> late samples

    def __len__(self) -> int:
        return sum(len(g) for g in self._open.values())

    def _closed_before(self, provider_id: str) -> int:
        """Windows that end at or before this instant are closed for the provider."""
        return self._watermark.get(provider_id, -(10**15)) - self.lateness_ms

    def add(
        self,
        provider_id: str,
        resource_ids: list[str],
        ts_ms: list[int],
        cpu: list[float],
        mem: list[float],
        storage: list[float],
        now_ms: int,
    ) -> list[bool]:
        """Add one provider's samples; return a late flag per sample."""
        horizon = self._closed_before(provider_id)
        late_flags: list[bool] = []
        groups = self._open
        for rid, t, c, m, s in zip(resource_ids, ts_ms, cpu, mem, storage):
            minute = t - t % MINUTE_MS
            if minute + MINUTE_MS <= horizon:
                late_flags.append(True)
                continue
            late_flags.append(False)
            group = groups.get((provider_id, minute))
            if group is None:
                group = groups[(provider_id, minute)] = {}
            cols = group.get(rid)
            if cols is None:
                cols = group[rid] = [[], [], []]
            cols[0].append(c)
            cols[1].append(m)
            cols[2].append(s)
        n_late = late_flags.count(True)
        if n_late:
            self.late[provider_id] += n_late
        if ts_ms:
            newest = max(ts_ms)
            if newest > self._watermark.get(provider_id, -(10**15)):
                self._watermark[provider_id] = newest
            self._seen_wall[provider_id] = now_ms
        return late_flags

    def close_ready(self, now_ms: int) -> list[MinuteRollup]:
        """Close and summarise every window whose provider watermark (or quiet time) allows it."""
        # a provider quiet for longer than the lateness: advance its watermark to wall time
        for provider_id, seen in self._seen_wall.items():
            if now_ms - seen > self.lateness_ms:
                self._watermark[provider_id] = max(self._watermark[provider_id], now_ms)
        out: list[MinuteRollup] = []
        ready = [k for k in self._open if k[1] + MINUTE_MS <= self._closed_before(k[0])]
        for provider_id, minute in sorted(ready, key=lambda k: k[1]):
            for rid, cols in self._open.pop((provider_id, minute)).items():
                out.append(summarize(rid, provider_id, minute, cols))
        return out

    def open_rollups(self) -> list[MinuteRollup]:
        """The current, still-open minutes of every resource (for the live view)."""
        return [
            summarize(rid, p, minute, cols)
            for (p, minute), group in self._open.items()
            for rid, cols in group.items()
        ]
