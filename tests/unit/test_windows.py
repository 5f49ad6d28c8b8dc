"""Live 1-minute windows: maths against hand-computed values, lateness, closing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streams.windows import MINUTE_MS, MinuteWindows, p95, quantile, summarize

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a minute boundary


@pytest.mark.parametrize(
    "values, expected",
    [
        ([10.0], 10.0),
        ([10.0, 20.0], 19.5),  # 10 + 0.95 * 10
        ([1.0, 2.0, 3.0, 4.0, 5.0], 4.8),  # pos 3.8 → 4 + 0.8
        ([50.0, 10.0, 30.0, 20.0], 47.0),  # sorted 10,20,30,50; pos 2.85 → 30 + 0.85*20
    ],
)
def test_p95_by_hand(values: list[float], expected: float) -> None:
    assert p95(values) == pytest.approx(expected)


def test_quantile_matches_numpy_linear() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 7, 60, 61):
        xs = list(rng.uniform(0, 100, n))
        for q in (0.0, 0.5, 0.95, 1.0):
            assert quantile(xs, q) == pytest.approx(float(np.quantile(xs, q)))
    assert math.isnan(quantile([], 0.95))


def _add(w: MinuteWindows, provider: str, rid: str, t: int, cpu: float, now: int | None = None) -> list[bool]:
    return w.add(provider, [rid], [t], [cpu], [cpu / 2], [50.0], now if now is not None else t)


def test_minute_rollup_values() -> None:
    w = MinuteWindows(allowed_lateness_ms=0)
    for i, cpu in enumerate([10.0, 20.0, 30.0, 40.0]):
        _add(w, "p", "r1", T0 + i * 15_000, cpu)
    # nothing closes until an event of the next minute moves the watermark past the end
    assert w.close_ready(T0 + 59_000) == []
    _add(w, "p", "r1", T0 + MINUTE_MS, 99.0)
    (r,) = w.close_ready(T0 + MINUTE_MS)
    assert (r.resource_id, r.minute_ms, r.samples) == ("r1", T0, 4)
    assert r.cpu_mean == pytest.approx(25.0)
    assert r.cpu_max == 40.0
    assert r.cpu_p95 == pytest.approx(38.5)  # 30 + 0.85 * 10
    assert r.mem_mean == pytest.approx(12.5)


def test_allowed_lateness_keeps_window_open_then_counts_late() -> None:
    w = MinuteWindows(allowed_lateness_ms=120_000)
    _add(w, "p", "r1", T0 + 1_000, 10.0)
    _add(w, "p", "r1", T0 + 2 * MINUTE_MS + 30_000, 10.0)  # watermark 2:30, horizon 0:30
    assert w.close_ready(T0 + 2 * MINUTE_MS + 30_000) == []
    # within lateness: still counts in minute 0
    assert _add(w, "p", "r1", T0 + 20_000, 30.0, now=T0 + 150_000) == [False]
    _add(w, "p", "r1", T0 + 3 * MINUTE_MS + 1_000, 10.0)  # horizon 1:01 → minute 0 closes
    closed = {r.minute_ms: r for r in w.close_ready(T0 + 3 * MINUTE_MS + 1_000)}
    assert closed[T0].samples == 2 and closed[T0].cpu_mean == pytest.approx(20.0)
    # minute 0 is closed: a sample for it now is late, counted, not added
    assert _add(w, "p", "r1", T0 + 5_000, 90.0, now=T0 + 3 * MINUTE_MS + 2_000) == [True]
    assert w.late["p"] == 1


def test_watermarks_are_per_provider() -> None:
    """A backfilling provider in the past is not late because another provider is live."""
    w = MinuteWindows(allowed_lateness_ms=60_000)
    _add(w, "live", "a", T0 + 100 * MINUTE_MS, 10.0)
    assert _add(w, "backfill", "b", T0, 10.0, now=T0 + 100 * MINUTE_MS) == [False]
    assert w.late["backfill"] == 0


def test_quiet_provider_windows_close_on_wall_clock() -> None:
    w = MinuteWindows(allowed_lateness_ms=60_000)
    _add(w, "p", "r1", T0 + 10_000, 10.0, now=T0 + 10_000)
    assert w.close_ready(T0 + 60_000) == []
    closed = w.close_ready(T0 + 10_000 + 60_001 + MINUTE_MS)
    assert [r.minute_ms for r in closed] == [T0]
    assert len(w) == 0


def _random_batches(seed: int) -> list[tuple[str, list[str], list[int], list[float]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(40):
        p = f"p{rng.integers(3)}"
        n = int(rng.integers(1, 60))
        rids = [f"r{rng.integers(12)}" for _ in range(n)]
        ts = [T0 + int(rng.integers(0, 6 * MINUTE_MS)) for _ in range(n)]
        cpu = [round(float(v), 2) for v in rng.uniform(0, 100, n)]
        out.append((p, rids, ts, cpu))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_columnar_windows_match_a_per_sample_summary(seed: int) -> None:
    """Every closed minute equals the plain per-resource summary of the samples that went in."""
    w = MinuteWindows(allowed_lateness_ms=10**12)  # nothing late: every sample lands in a window
    expect: dict[tuple[str, str, int], list[list[float]]] = {}
    for p, rids, ts, cpu in _random_batches(seed):
        w.add(p, rids, ts, cpu, [c / 2 for c in cpu], [100 - c for c in cpu], T0)
        for r, t, c in zip(rids, ts, cpu):
            cols = expect.setdefault((p, r, t - t % MINUTE_MS), [[], [], []])
            for col, v in zip(cols, (c, c / 2, 100 - c)):
                col.append(v)
    assert len(w) == len(expect)
    w.lateness_ms = 0
    closed = w.close_ready(T0 + 10**9)
    assert len(closed) == len(expect) and len(w) == 0
    for r in closed:
        ref = summarize(r.resource_id, r.provider_id, r.minute_ms, expect[(r.provider_id, r.resource_id, r.minute_ms)])
        assert r.samples == ref.samples and r.cpu_max == ref.cpu_max and r.storage_max == ref.storage_max
        for a, b in [(r.cpu_mean, ref.cpu_mean), (r.cpu_p95, ref.cpu_p95), (r.mem_p95, ref.mem_p95),
                     (r.storage_mean, ref.storage_mean), (r.storage_p95, ref.storage_p95)]:  # fmt: skip
            assert a == pytest.approx(b, rel=1e-12)


def test_newest_only_closes_everything_but_summarises_each_resources_newest_minute() -> None:
    full, newest = MinuteWindows(0), MinuteWindows(0)
    for p, rids, ts, cpu in _random_batches(5):
        for w in (full, newest):
            w.add(p, rids, ts, cpu, cpu, cpu, T0)
    everything = full.close_ready(T0 + 10**9)
    latest: dict[str, object] = {}
    for r in everything:
        cur = latest.get(r.resource_id)
        if cur is None or r.minute_ms > cur.minute_ms:  # type: ignore[attr-defined]
            latest[r.resource_id] = r
    got = newest.close_ready(T0 + 10**9, newest_only=True)
    assert sorted(got, key=lambda r: r.resource_id) == sorted(latest.values(), key=lambda r: r.resource_id)
    assert len(newest) == 0  # the older minutes are closed too, just not summarised
