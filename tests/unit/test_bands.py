"""Bands with hysteresis, band-change transitions and capacity-weighted aggregates, against hand-computed data."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from opscenter.inventory import Resource
from streams.bands import (
    BandPolicy, BandState, Thresholds, WindowFigures, band_event, capacity_weighted, classify,
    figures_from_row, policy_at, step,
)  # fmt: skip

TH = Thresholds()  # 20 / 80, margin 2
T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "previous", "band"),
    [
        # first classification: 20 and 80 themselves are normal
        (19.99, None, "low"), (20.0, None, "normal"), (80.0, None, "normal"), (80.01, None, "high"),
        (0.0, None, "low"), (100.0, None, "high"),
        # from normal: the plain thresholds
        (80.0, "normal", "normal"), (80.5, "normal", "high"), (20.0, "normal", "normal"), (19.9, "normal", "low"),
        # from high: leave only below 78
        (79.0, "high", "high"), (78.0, "high", "high"), (77.99, "high", "normal"), (10.0, "high", "low"),
        # from low: leave only above 22
        (21.0, "low", "low"), (22.0, "low", "low"), (22.01, "low", "normal"), (90.0, "low", "high"),
    ],
)  # fmt: skip
def test_classify_boundaries_and_hysteresis(value: float, previous: str | None, band: str) -> None:
    assert classify(value, previous, TH) == band


def test_value_hovering_at_80_does_not_flap() -> None:
    values = [79.5, 80.5, 79.5, 80.2, 78.5, 79.9, 78.0, 80.0, 77.5, 79.0, 80.0, 80.1]
    state: BandState | None = None
    seen = []
    for i, v in enumerate(values):
        state, tr = step("r1", "cpu", "1h", v, state, TH, i * 60_000)
        seen.append(state.band)
        if tr is not None:
            seen[-1] += "*"
    # by hand: normal (silent first), high at 80.5, stays high down to 78.0, normal at 77.5,
    # stays normal at 79.0 and 80.0, high again at 80.1
    assert seen == ["normal", "high*", "high", "high", "high", "high", "high", "high", "normal*",
                    "normal", "normal", "high*"]  # fmt: skip


def test_value_hovering_at_20_does_not_flap() -> None:
    values = [25.0, 19.5, 20.5, 21.9, 22.0, 19.0, 22.5, 20.0, 19.99]
    state: BandState | None = None
    bands = []
    for i, v in enumerate(values):
        state, _ = step("r1", "memory", "24h", v, state, TH, i)
        bands.append(state.band)
    assert bands == ["normal", "low", "low", "low", "low", "low", "normal", "normal", "low"]


def test_first_classification_only_announces_out_of_band() -> None:
    st, tr = step("r1", "cpu", "7d", 50.0, None, TH, 1000)
    assert st == BandState("normal", 1000) and tr is None
    st, tr = step("r1", "cpu", "7d", 5.0, None, TH, 1000)
    assert st == BandState("low", 1000)
    assert tr is not None and (tr.from_band, tr.to_band, tr.prev_since_ms) == (None, "low", 0)


def test_unchanged_band_keeps_its_state_object_and_since() -> None:
    old = BandState("high", 500)
    st, tr = step("r1", "cpu", "1h", 79.0, old, TH, 9000)
    assert st is old and tr is None


def test_event_id_is_stable_for_the_same_transition_and_differs_for_the_next() -> None:
    prev = BandState("normal", 60_000)
    _, a = step("r1", "cpu", "1h", 85.0, prev, TH, 120_000)
    _, b = step("r1", "cpu", "1h", 99.0, prev, TH, 180_000)  # recomputed later (after a crash)
    assert a is not None and b is not None and a.event_id == b.event_id
    _, c = step("r1", "cpu", "1h", 85.0, BandState("normal", 240_000), TH, 300_000)  # a later episode
    _, d = step("r1", "cpu", "24h", 85.0, prev, TH, 120_000)
    assert c is not None and d is not None and len({a.event_id, c.event_id, d.event_id}) == 3


def test_band_event_envelope() -> None:
    res = Resource("r1", "p1", "u1", "d1", "db", 4, 8, 100, "delivered", 15, T0)
    _, tr = step("r1", "memory", "24h", 81.234567, BandState("normal", 0), TH, 1_772_409_600_000)
    assert tr is not None
    ev = band_event(tr, res)
    assert (ev.kind, ev.subject, ev.resource_id, ev.provider_id, ev.unit_id, ev.district_id) == (
        "band_change", "r1", "r1", "p1", "u1", "d1")
    assert ev.data == {"metric": "memory", "window": "24h", "from": "normal", "to": "high", "value": 81.235, "name": "db"}
    assert ev.ts == datetime(2026, 3, 2, tzinfo=timezone.utc) and ev.event_id == tr.event_id


def test_assurance_hook_tightens_thresholds() -> None:
    tight = BandPolicy(Thresholds(25.0, 70.0, 2.0))
    hook = lambda now: tight if now >= T0 else None  # noqa: E731
    normal = BandPolicy()
    assert policy_at(datetime(2026, 3, 1, tzinfo=timezone.utc), normal, hook) is normal
    p = policy_at(T0, normal, hook)
    assert p is tight and classify(75.0, None, p.thresholds("cpu")) == "high"
    assert classify(75.0, None, normal.thresholds("cpu")) == "normal"
    per = BandPolicy(per_metric={"storage": Thresholds(10.0, 90.0, 1.0)})
    assert classify(85.0, None, per.thresholds("storage")) == "normal"
    assert classify(85.0, None, per.thresholds("cpu")) == "high"


@pytest.mark.parametrize(("low", "high", "margin"), [(80, 20, 2), (-1, 80, 2), (20, 101, 2), (20, 80, -1), (45, 55, 5)])
def test_bad_thresholds_are_refused(low: float, high: float, margin: float) -> None:
    with pytest.raises(ValueError):
        Thresholds(low, high, margin)


def _fig(rid: str, cpu: tuple[float, float, float], mem: tuple[float, float, float],
         sto: tuple[float, float, float], window: str = "1h") -> WindowFigures:  # fmt: skip
    return WindowFigures(rid, window, 60, 60, *cpu, *mem, *sto)


def test_capacity_weighted_aggregates_by_hand() -> None:
    res = {
        "r1": Resource("r1", "p1", "u1", "d1", "a", 4, 8, 0, "delivered", 15, T0),
        "r2": Resource("r2", "p1", "u1", "d1", "b", 12, 24, 500, "delivered", 15, T0),
        "r3": Resource("r3", "p2", "u2", "d1", "c", 16, 32, 1500, "delivered", 15, T0),
    }
    figs = [
        _fig("r1", (10, 30, 20), (20, 40, 30), (90, 95, 92)),  # (mean, max, p95)
        _fig("r2", (50, 90, 70), (60, 80, 70), (40, 60, 50)),
        _fig("r3", (25, 60, 40), (30, 50, 40), (20, 30, 25)),
        _fig("ghost", (99, 99, 99), (99, 99, 99), (99, 99, 99)),  # not registered: ignored
    ]
    units = capacity_weighted(figs, res, "unit")
    u1 = units[("u1", "1h")]
    assert u1.resources == 2
    # cpu by vCPU 4 and 12: mean (4·10 + 12·50) / 16 = 40, p95 (4·20 + 12·70) / 16 = 57.5, max 90
    assert (u1.metrics["cpu"].capacity, u1.metrics["cpu"].mean_pct, u1.metrics["cpu"].p95_pct,
            u1.metrics["cpu"].max_pct) == (16, 40.0, 57.5, 90.0)  # fmt: skip
    # memory by GB 8 and 24: mean (160 + 1440) / 32 = 50, p95 (240 + 1680) / 32 = 60
    assert (u1.metrics["memory"].mean_pct, u1.metrics["memory"].p95_pct) == (50.0, 60.0)
    # storage: r1 has no storage capacity, so only r2 counts
    sto = u1.metrics["storage"]
    assert (sto.capacity, sto.mean_pct, sto.max_pct) == (500, 40.0, 60.0)
    d1 = capacity_weighted(figs, res.get, "district")[("d1", "1h")]
    # cpu over 4 + 12 + 16 = 32 vCPU: (40 + 600 + 400) / 32 = 32.5
    assert d1.resources == 3 and d1.metrics["cpu"].mean_pct == 32.5
    # storage over 500 + 1500 GB: (500·40 + 1500·20) / 2000 = 25
    assert d1.metrics["storage"].mean_pct == 25.0
    doc = d1.doc(BandPolicy())
    assert doc["cpu"]["band"] == "normal" and doc["storage"]["band"] == "normal"  # type: ignore[index]
    with pytest.raises(ValueError):
        capacity_weighted(figs, res, "provider")


def test_figures_from_sql_row() -> None:
    row = {"resource_id": "r1", "sample_count": 240, "buckets": 60, "cpu_mean": 1.0, "cpu_max": 2.0, "cpu_p95": 3.0,
           "mem_mean": 4.0, "mem_max": 5.0, "mem_p95": 6.0, "storage_mean": 7.0, "storage_max": 8.0,
           "storage_p95": 9.0}  # fmt: skip
    f = figures_from_row("24h", row)
    assert (f.stat("cpu", "p95"), f.stat("memory", "mean"), f.stat("storage", "max")) == (3.0, 4.0, 8.0)
    assert f.doc()["memory"] == {"mean": 4.0, "max": 5.0, "p95": 6.0}
