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
from typing import Sequence

import numpy as np

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


@dataclass(slots=True)
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


class _Group:
    """One provider-minute: the samples added to it, as columnar chunks (resource codes and values)."""

    __slots__ = ("chunks", "rids")

    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, np.ndarray]] = []  # (codes int32[n], values float64[3, n])
        self.rids: set[int] = set()


class MinuteWindows:
    """Open 1-minute windows of every resource; closed windows come out as :class:`MinuteRollup`.

    Columnar: a batch is added with a few numpy operations (no Python work per sample beyond
    mapping resource ids to integer codes), and a minute is summarised for all its resources
    at once when it closes (:func:`summarize_group`).
    """

    def __init__(self, allowed_lateness_ms: int = 120_000) -> None:
        self.lateness_ms = allowed_lateness_ms
        # (provider, minute) -> its samples; closing walks groups, not resources
        self._open: dict[tuple[str, int], _Group] = {}
        self._watermark: dict[str, int] = {}  # provider -> newest event time seen
        self._seen_wall: dict[str, int] = {}  # provider -> wall clock of its last sample
        self.late: dict[str, int] = defaultdict(int)  # provider -> late samples
        self._code: dict[str, int] = {}  # resource id -> code (resources are few; codes never reused)
        self._rid: list[str] = []

    def __len__(self) -> int:
        return sum(len(g.rids) for g in self._open.values())

    def _closed_before(self, provider_id: str) -> int:
        """Windows that end at or before this instant are closed for the provider."""
        return self._watermark.get(provider_id, -(10**15)) - self.lateness_ms

    def _codes(self, resource_ids: Sequence[str]) -> np.ndarray:
        code, rid = self._code, self._rid
        out = [code.get(r, -1) for r in resource_ids]
        if -1 in out:
            for i, c in enumerate(out):
                if c == -1:
                    r = resource_ids[i]
                    c = code.get(r)
                    if c is None:
                        c = code[r] = len(rid)
                        rid.append(r)
                    out[i] = c
        return np.array(out, dtype=np.int32)

    def add(
        self,
        provider_id: str,
        resource_ids: Sequence[str],
        ts_ms: Sequence[int] | np.ndarray,
        cpu: Sequence[float] | np.ndarray,
        mem: Sequence[float] | np.ndarray,
        storage: Sequence[float] | np.ndarray,
        now_ms: int,
    ) -> list[bool]:
        """Add one provider's samples; return a late flag per sample."""
        n = len(resource_ids)
        if n == 0:
            return []
        horizon = self._closed_before(provider_id)
        ts = np.asarray(ts_ms, dtype=np.int64)
        minute = ts - ts % MINUTE_MS
        late = minute + MINUTE_MS <= horizon
        n_late = int(late.sum())
        codes = self._codes(resource_ids)
        values = np.array((cpu, mem, storage), dtype=np.float64)
        if n_late:
            self.late[provider_id] += n_late
            keep = ~late
            minute, codes, values = minute[keep], codes[keep], values[:, keep]
        if len(minute):
            first = int(minute[0])
            if bool((minute == first).all()):  # the usual batch: one minute
                self._append(provider_id, first, codes, values)
            else:
                order = np.argsort(minute, kind="stable")
                minute, codes, values = minute[order], codes[order], values[:, order]
                bounds = np.flatnonzero(np.diff(minute)) + 1
                for a, b in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [len(minute)]))):
                    self._append(provider_id, int(minute[a]), codes[a:b], values[:, a:b])
        newest = int(ts.max())
        if newest > self._watermark.get(provider_id, -(10**15)):
            self._watermark[provider_id] = newest
        self._seen_wall[provider_id] = now_ms
        return late.tolist()

    def _append(self, provider_id: str, minute: int, codes: np.ndarray, values: np.ndarray) -> None:
        group = self._open.get((provider_id, minute))
        if group is None:
            group = self._open[(provider_id, minute)] = _Group()
        group.chunks.append((codes, values))
        group.rids.update(codes.tolist())

    def close_ready(self, now_ms: int, newest_only: bool = False) -> list[MinuteRollup]:
        """Close and summarise every window whose provider watermark (or quiet time) allows it.

        ``newest_only``: summarise only each resource's newest closed minute (what the live
        view publishes; the others are dropped unsummarised — ClickHouse's rollup views store
        every minute). A backlog closes many minutes per resource at once: this keeps it cheap.
        """
        # a provider quiet for longer than the lateness: advance its watermark to wall time
        for provider_id, seen in self._seen_wall.items():
            if now_ms - seen > self.lateness_ms:
                self._watermark[provider_id] = max(self._watermark[provider_id], now_ms)
        out: list[MinuteRollup] = []
        ready = [k for k in self._open if k[1] + MINUTE_MS <= self._closed_before(k[0])]
        if not newest_only:
            for provider_id, minute in sorted(ready, key=lambda k: k[1]):
                out.extend(self._summarize(provider_id, minute, self._open.pop((provider_id, minute))))
            return out
        done: set[int] = set()  # resource codes whose newest closed minute is summarised
        for provider_id, minute in sorted(ready, key=lambda k: k[1], reverse=True):
            group = self._open.pop((provider_id, minute))
            if group.rids <= done:
                continue
            fresh = group.rids - done
            out.extend(self._summarize(provider_id, minute, group, fresh if len(fresh) < len(group.rids) else None))
            done |= fresh
        out.reverse()
        return out

    def open_rollups(self) -> list[MinuteRollup]:
        """The current, still-open minutes of every resource (for the live view)."""
        return [r for (p, minute), g in self._open.items() for r in self._summarize(p, minute, g)]

    def _summarize(
        self, provider_id: str, minute: int, group: _Group, only: set[int] | None = None
    ) -> list[MinuteRollup]:
        if len(group.chunks) == 1:
            codes, values = group.chunks[0]
        else:
            codes = np.concatenate([c for c, _ in group.chunks])
            values = np.concatenate([v for _, v in group.chunks], axis=1)
        if only is not None:
            keep = np.isin(codes, np.fromiter(only, dtype=np.int32, count=len(only)))
            codes, values = codes[keep], values[:, keep]
        uniq, n, mean, mx, q = summarize_group(codes, values)
        rid = self._rid
        return [
            MinuteRollup(rid[u], provider_id, minute, c, m0, x0, q0, m1, x1, q1, m2, x2, q2)
            for u, c, m0, x0, q0, m1, x1, q1, m2, x2, q2 in zip(
                uniq.tolist(), n.tolist(), *(a.tolist() for k in range(3) for a in (mean[k], mx[k], q[k]))
            )
        ]


def summarize_group(codes: np.ndarray, values: np.ndarray, q: float = 0.95) -> tuple[np.ndarray, ...]:
    """Per resource code: count, and per metric row of ``values`` the mean, max and ``q`` quantile
    (linear interpolation, as :func:`quantile`), all at once."""
    uniq, inv = np.unique(codes, return_inverse=True)
    counts = np.bincount(inv)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = (counts - 1) * q
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts - 1)
    frac = pos - lo
    means, maxes, quants = [], [], []
    for row in values:
        # by resource, then value: the values are validated into [0, 100], so one float key sorts both
        s = row[np.argsort(inv * 1024.0 + row, kind="stable")]
        means.append(np.bincount(inv, weights=row) / counts)
        maxes.append(s[starts + counts - 1])
        a, b = s[starts + lo], s[starts + hi]
        quants.append(a + (b - a) * frac)
    return uniq, counts, means, maxes, quants
