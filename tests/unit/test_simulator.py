"""The simulator: keyed batches, complete sample grids, realistic load, live and backfill."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from functools import cache

from opscenter.demo import City, DemoResource, city
from opscenter.simulator import backfill, batches, load_at, produce_live, samples_per_second
from opscenter.wire import Sample, shard_key, telemetry_decoder

# Wednesday 2024-03-06 10:00 in Weihai (UTC+8): office hours
START = int(datetime(2024, 3, 6, 2, 0, tzinfo=timezone.utc).timestamp() * 1000)
HOUR = 3_600_000
END = START + HOUR


def _is_bad(s: Sample) -> bool:
    return s.cpu_pct == 130.0 or s.mem_pct < 0


def _in_range(s: Sample) -> bool:
    pct = (s.cpu_pct, s.mem_pct, s.storage_pct)
    rates = (s.net_rx_kbps or 0.0, s.net_tx_kbps or 0.0)
    return all(0.0 <= v <= 100.0 for v in pct) and all(v >= 0.0 for v in rates)


@cache
def _city() -> City:
    return city()


@cache
def _hour(bad_fraction: float = 0.02, gaps: bool = True, batch_size: int = 100) -> tuple:
    """One office hour of the default city, decoded: ((key, batch), ...)."""
    out = []
    for key, value in batches(_city(), START, END, batch_size=batch_size, rng=random.Random(5),
                              bad_fraction=bad_fraction, gaps=gaps):  # fmt: skip
        assert isinstance(key, bytes) and isinstance(value, bytes)
        out.append((key, telemetry_decoder.decode(value)))
    return tuple(out)


def _samples(msgs: tuple) -> list[Sample]:
    return [s for _, b in msgs for s in b.samples]


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def test_messages_decode_and_hold_one_key_each() -> None:
    c = _city()
    by_id = {r.resource_id: r for r in c.resources}
    msgs = _hour()
    assert msgs
    batch_ids = [b.batch_id for _, b in msgs]
    assert len(set(batch_ids)) == len(batch_ids)
    for key, b in msgs:
        assert b.v == 1 and 1 <= len(b.samples) <= 100
        for s in b.samples:
            r = by_id[s.resource_id]
            assert r.provider_id == b.provider_id
            assert shard_key(b.provider_id, s.resource_id) == key
            assert s.ts.utcoffset() is not None and s.ts.utcoffset().total_seconds() == 0
            t = _ms(s.ts)
            assert START <= t < END
            assert t % (r.interval_s * 1000) == 0
        # a message never spans more than a minute of event time (watermarks advance evenly)
        ts = [_ms(s.ts) for s in b.samples]
        assert max(ts) - min(ts) < 60_000
        assert ts == sorted(ts)


def test_batch_size_is_respected() -> None:
    small = list(batches(_city(), START, START + 600_000, batch_size=7, rng=random.Random(1)))
    sizes = [len(telemetry_decoder.decode(v).samples) for _, v in small]
    assert max(sizes) == 7
    total = sum(sizes)
    big = list(batches(_city(), START, START + 600_000, batch_size=500, rng=random.Random(1)))
    assert sum(len(telemetry_decoder.decode(v).samples) for _, v in big) == total
    assert len(big) < len(small)


def test_timestamps_are_rfc3339_utc() -> None:
    _, value = next(batches(_city(), START, START + 1, rng=random.Random(1)))
    assert b'"ts":"2024-03-06T02:00:00Z"' in value


def test_sample_counts_match_intervals_minus_flaky_gaps() -> None:
    c = _city()
    counts = Counter(s.resource_id for s in _samples(_hour()))
    flaky_expected = flaky_seen = 0
    for r in c.resources:
        expected = HOUR // (r.interval_s * 1000)
        if r.profile == "flaky":
            assert counts[r.resource_id] <= expected
            flaky_expected += expected
            flaky_seen += counts[r.resource_id]
        else:
            assert counts[r.resource_id] == expected, r
    assert 0.5 * flaky_expected < flaky_seen < flaky_expected  # gaps exist, but not everywhere
    # gaps come in whole blocks: a flaky resource's missing samples are contiguous runs
    no_gaps = Counter(s.resource_id for s in _samples(_hour(gaps=False)))
    assert all(no_gaps[r.resource_id] == HOUR // (r.interval_s * 1000) for r in c.resources)


def test_generation_is_deterministic_given_rng() -> None:
    a = list(batches(_city(), START, START + 300_000, rng=random.Random(9), bad_fraction=0.01))
    b = list(batches(_city(), START, START + 300_000, rng=random.Random(9), bad_fraction=0.01))
    assert a == b


def test_idle_low_overloaded_high() -> None:
    c = _city()
    per: dict[str, list[Sample]] = defaultdict(list)
    for s in _samples(_hour()):
        if not _is_bad(s):
            per[s.resource_id].append(s)
    by_profile: dict[str, list[DemoResource]] = defaultdict(list)
    for r in c.resources:
        by_profile[r.profile].append(r)
    for r in by_profile["idle"]:
        ss = per[r.resource_id]
        assert max(s.cpu_pct for s in ss) < 15 and max(s.mem_pct for s in ss) < 15
    for r in by_profile["overloaded"]:
        assert statistics.fmean(s.cpu_pct for s in per[r.resource_id]) > 85
    normal = [s.cpu_pct for r in by_profile["normal"] for s in per[r.resource_id]]
    assert 15 < statistics.fmean(normal) < 85


def test_bad_samples_at_requested_fraction_inside_good_batches() -> None:
    msgs = _hour(bad_fraction=0.02)
    samples = _samples(msgs)
    bad = [s for s in samples if _is_bad(s)]
    assert 0.014 < len(bad) / len(samples) < 0.026
    assert any(s.cpu_pct == 130.0 for s in bad) and any(s.mem_pct < 0 for s in bad)
    assert all(_in_range(s) for s in samples if not _is_bad(s))
    # bad samples travel with good ones
    with_bad = [b for _, b in msgs if any(map(_is_bad, b.samples))]
    assert with_bad and all(any(not _is_bad(s) for s in b.samples) for b in with_bad)
    clean = _samples(_hour(bad_fraction=0.0))
    assert all(_in_range(s) for s in clean)


def test_load_model_daily_and_weekly_cycle() -> None:
    c = _city()
    rng = random.Random(3)
    normal = [r for r in c.resources if r.profile == "normal"][:40]

    def mean_cpu(t_ms: int) -> float:
        return statistics.fmean(load_at(r, t_ms, rng)[0] for r in normal)

    wed = START  # 10:00 local, Wednesday
    night = wed - 7 * HOUR  # 03:00 local
    afternoon = wed + 5 * HOUR  # 15:00 local
    saturday = wed + 3 * 24 * HOUR
    assert mean_cpu(wed) > mean_cpu(night) + 15
    assert mean_cpu(afternoon) > mean_cpu(night) + 15
    assert mean_cpu(saturday) < mean_cpu(wed) - 10


def test_load_model_profiles_over_a_week() -> None:
    c = _city()
    rng = random.Random(4)
    week = range(START, START + 7 * 24 * HOUR, 600_000)
    idle = [r for r in c.resources if r.profile == "idle"][:5]
    over = [r for r in c.resources if r.profile == "overloaded"][:5]
    for r in idle + over:
        for t in week:
            assert all(0.0 <= v <= 100.0 for v in load_at(r, t, rng))
    for r in idle:
        assert all(max(load_at(r, t, rng)[:2]) < 15 for t in week)
    for r in over:
        above = sum(load_at(r, t, rng)[0] > 85 for t in week)
        assert above / len(week) > 0.8
    # storage moves slowly: a per-resource level, not noise
    r = c.resources[10]
    sto = [load_at(r, START + i * 15_000, rng)[2] for i in range(200)]
    assert max(abs(a - b) for a, b in zip(sto, sto[1:])) < 0.2
    assert load_at(r, START, random.Random(1)) == load_at(r, START, random.Random(1))


def test_samples_per_second() -> None:
    c = _city()
    assert math.isclose(samples_per_second(c), sum(1 / r.interval_s for r in c.resources))
    assert 10 < samples_per_second(c) < 20


def _clock_before_minute(lead_s: float) -> tuple[object, int]:
    """A clock running at real speed that reads ``lead_s`` before a whole minute right now."""
    now = time.time()
    minute = (math.floor(now / 60) + 2) * 60
    offset = minute - lead_s - now
    return (lambda: time.time() + offset), minute * 1000


def test_produce_live_runs_for_its_duration() -> None:
    c = _city()
    clock, minute_ms = _clock_before_minute(0.5)
    sent: list[tuple[str, bytes, bytes]] = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        sent.append((topic, key, value))

    t0 = time.monotonic()
    n = asyncio.run(produce_live(send, c, rate=None, duration_s=1.5, clock=clock))
    elapsed = time.monotonic() - t0
    assert 1.4 < elapsed < 2.5
    assert {t for t, _, _ in sent} == {"telemetry.v1"}
    samples: list[Sample] = []
    for _, key, value in sent:
        b = telemetry_decoder.decode(value)
        assert all(shard_key(b.provider_id, s.resource_id) == key for s in b.samples)
        samples.extend(b.samples)
    assert n == len(samples) > 0
    # the only grid point in the window is the whole minute: every resource (minus gaps) reports
    assert {_ms(s.ts) for s in samples} == {minute_ms}
    due = batches(c, minute_ms, minute_ms + 1, rng=random.Random())
    expected = sum(len(telemetry_decoder.decode(v).samples) for _, v in due)
    assert n == expected
    assert expected > 0.8 * len(c.resources)


def test_produce_live_rate_cap_drives_fewer_resources() -> None:
    c = _city()
    clock, minute_ms = _clock_before_minute(0.2)
    keys: list[bytes] = []
    samples: list[Sample] = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        keys.append(key)
        samples.extend(telemetry_decoder.decode(value).samples)

    n = asyncio.run(produce_live(send, c, rate=2.0, duration_s=0.5, clock=clock))
    ids = {s.resource_id for s in samples}
    assert n == len(samples) > 0
    # the first resources whose natural rate fits in 2 samples/s
    allowed: set[str] = set()
    total = 0.0
    for r in c.resources:
        if total + 1 / r.interval_s > 2.0:
            break
        allowed.add(r.resource_id)
        total += 1 / r.interval_s
    assert ids <= allowed and {"r-00001", "r-00002", "r-00003"} <= ids


def test_produce_live_stops_when_told() -> None:
    c = _city()
    calls = 0

    async def send(topic: str, key: bytes, value: bytes) -> None:
        nonlocal calls
        calls += 1

    async def run() -> tuple[int, float]:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        t0 = time.monotonic()
        n = await produce_live(send, c, rate=None, duration_s=None, stop=stop)
        return n, time.monotonic() - t0

    n, elapsed = asyncio.run(run())
    assert elapsed < 0.6
    assert n >= 0 and (n == 0) == (calls == 0)


def test_backfill_covers_the_history() -> None:
    c = _city()
    now_ms = START
    days = 0.05
    span = int(days * 86_400_000)
    per: Counter[str] = Counter()
    messages = 0

    async def send(topic: str, key: bytes, value: bytes) -> None:
        nonlocal messages
        messages += 1
        for s in telemetry_decoder.decode(value).samples:
            assert now_ms - span <= _ms(s.ts) < now_ms
            per[s.resource_id] += 1

    n = asyncio.run(backfill(send, c, days, now_ms=now_ms))
    assert n == sum(per.values()) and messages > 0
    for r in c.resources:
        expected = span // (r.interval_s * 1000)  # START and the span are aligned to every grid
        if r.profile == "flaky":
            assert per[r.resource_id] <= expected
        else:
            assert per[r.resource_id] == expected
    full = sum(span // (r.interval_s * 1000) for r in c.resources)
    assert 0.9 * full < n <= full
