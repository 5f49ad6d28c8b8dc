"""Telemetry of the demo city: pure load and batch generation; async live and backfill producers."""

from __future__ import annotations

import asyncio
import math
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from functools import reduce

from opscenter.demo import City, DemoResource
from opscenter.wire import TOPIC_TELEMETRY, Sample, TelemetryBatch, json_encoder, shard_key

Send = Callable[[str, bytes, bytes], Awaitable[None]]

DAY_MS = 86_400_000
_TZ_OFFSET_MS = 8 * 3_600_000  # Asia/Shanghai, no DST
_UTC = timezone.utc
#: flaky resources go silent in whole blocks of this length ...
GAP_BLOCK_MS = 300_000
#: ... with this probability (percent) per block; decided by a hash, so live and backfill agree
GAP_PERCENT = 25
#: a message never spans more simulated time than this: every key is flushed at each boundary,
#: so a provider's event time advances evenly (no sample lags the provider's watermark by more)
DEFAULT_SPAN_S = 60
LIVE_TICK_S = 1.0


# --------------------------------------------------------------------------- load model


def _cycle(t_ms: int) -> float:
    """Office-hours load factor in [0, 1]: peaks ~10:00 and ~15:00 UTC+8, low at night, weekends."""
    local = t_ms + _TZ_OFFSET_MS
    h = (local % DAY_MS) / 3_600_000
    work = math.exp(-(((h - 10.0) / 1.8) ** 2) / 2) + math.exp(-(((h - 15.0) / 2.0) ** 2) / 2)
    c = 0.05 + 0.95 * min(1.0, work)
    weekday = (local // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; 5, 6 = Sat, Sun
    return c * 0.45 if weekday >= 5 else c


# per resource: cpu base, cpu amplitude, mem base, storage base, storage phase, net factor
_Params = tuple[float, float, float, float, float, float]
_PARAMS: dict[str, _Params] = {}


def _params(resource_id: str) -> _Params:
    """Stable per-resource levels, derived from the resource id only."""
    p = _PARAMS.get(resource_id)
    if p is None:
        r = random.Random(zlib.crc32(resource_id.encode()))
        p = (
            r.uniform(8.0, 25.0),  # cpu base
            r.uniform(25.0, 50.0),  # cpu daily amplitude
            r.uniform(30.0, 60.0),  # mem base
            r.uniform(20.0, 80.0),  # storage base
            r.uniform(0.0, 2 * math.pi),  # storage drift phase
            r.uniform(20.0, 200.0),  # kbps per cpu percent
        )
        _PARAMS[resource_id] = p
    return p


def _clamp(x: float) -> float:
    return 0.0 if x < 0.0 else 100.0 if x > 100.0 else x


def _load(
    resource_id: str, profile: str, t_ms: int, cyc: float, rng: random.Random
) -> tuple[float, float, float]:
    """cpu, mem, storage percentages of one resource at ``t_ms`` given the cycle factor."""
    cpu_base, cpu_amp, mem_base, sto_base, sto_phase, _ = _params(resource_id)
    rnd = rng.random
    tri = rnd() + rnd() - 1.0  # triangular noise in (-1, 1)
    if profile == "idle":
        cpu = min(14.5, 2.0 + 6.0 * cyc + 2.0 * tri)
        mem = min(14.5, 6.0 + 0.1 * mem_base + 2.0 * cyc + 1.0 * (rnd() - 0.5))
    elif profile == "overloaded":
        cpu = 90.5 + 6.0 * cyc + 6.0 * tri
        mem = mem_base + 30.0 + 5.0 * cyc + 3.0 * (rnd() - 0.5)
    else:  # normal, flaky
        cpu = cpu_base + cpu_amp * cyc + 6.0 * tri
        mem = mem_base + 0.3 * cpu_amp * cyc + 2.0 * (rnd() - 0.5)
    # storage: a per-resource level drifting a few points over a fortnight
    storage = sto_base + 4.0 * math.sin(t_ms / (14 * DAY_MS) * 2 * math.pi + sto_phase)
    storage += 0.05 * (rnd() - 0.5)
    return _clamp(cpu), _clamp(mem), _clamp(storage)


def load_at(res: DemoResource, t_ms: int, rng: random.Random) -> tuple[float, float, float]:
    """cpu, mem and storage percent in [0, 100] of ``res`` at ``t_ms``; deterministic given rng."""
    return _load(res.resource_id, res.profile, t_ms, _cycle(t_ms), rng)


def _in_gap(resource_id: str, t_ms: int) -> bool:
    """Whether a flaky resource is silent at ``t_ms`` (whole blocks, decided by a hash)."""
    block = t_ms // GAP_BLOCK_MS
    return zlib.crc32(f"{resource_id}/{block}".encode()) % 100 < GAP_PERCENT


def samples_per_second(city: City) -> float:
    """Natural sample rate of the city: the sum of 1 / interval_s over its resources."""
    return sum(1.0 / r.interval_s for r in city.resources)


# --------------------------------------------------------------------------- batches


def _batches(
    city: City,
    start_ms: int,
    end_ms: int,
    *,
    batch_size: int,
    rng: random.Random,
    bad_fraction: float,
    gaps: bool,
    span_s: int,
) -> Iterator[tuple[bytes, bytes, int]]:
    """Like :func:`batches`, also yielding the number of samples in each message."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not city.resources or end_ms <= start_ms:
        return
    # resources grouped by interval; each with its Kafka key and provider
    by_interval: dict[int, list[tuple[str, str, bool, bytes]]] = {}
    provider_of: dict[bytes, str] = {}
    for r in city.resources:
        key = shard_key(r.provider_id, r.resource_id)
        provider_of[key] = r.provider_id
        by_interval.setdefault(r.interval_s * 1000, []).append(
            (r.resource_id, r.profile, r.profile == "flaky" and gaps, key)
        )
        _params(r.resource_id)
    groups = sorted(by_interval.items())
    step = reduce(math.gcd, by_interval)
    span_ms = max(1, span_s) * 1000

    buffers: dict[bytes, list[Sample]] = {}
    counter = 0
    rnd = rng.random
    load = _load

    def message(key: bytes, samples: list[Sample]) -> tuple[bytes, bytes, int]:
        nonlocal counter
        provider = provider_of[key]
        batch = TelemetryBatch(provider_id=provider, batch_id=f"{provider}-{start_ms}-{counter}",
                               samples=samples)  # fmt: skip
        counter += 1
        return key, json_encoder.encode(batch), len(samples)

    t = -(-start_ms // step) * step  # first grid point >= start
    next_flush = (t // span_ms + 1) * span_ms
    while t < end_ms:
        if t >= next_flush:
            for key, buf in buffers.items():
                if buf:
                    yield message(key, buf)
            buffers = {}
            next_flush = (t // span_ms + 1) * span_ms
        ts = datetime.fromtimestamp(t / 1000, _UTC)
        cyc = _cycle(t)
        for interval, members in groups:
            if t % interval:
                continue
            for rid, profile, flaky, key in members:
                if flaky and _in_gap(rid, t):
                    continue
                cpu, mem, sto = load(rid, profile, t, cyc, rng)
                if bad_fraction and rnd() < bad_fraction:
                    if rnd() < 0.5:
                        cpu = 130.0  # a counter overflow / multi-core sum reported as percent
                    else:
                        mem = -round(1.0 + 49.0 * rnd(), 2)  # a signed-arithmetic bug
                net = _PARAMS[rid][5] * cpu if cpu <= 100.0 else 0.0
                s = Sample(rid, ts, round(cpu, 2), round(mem, 2), round(sto, 2),
                           round(net, 1), round(net * 0.6, 1))  # fmt: skip
                buf = buffers.get(key)
                if buf is None:
                    buf = buffers[key] = []
                buf.append(s)
                if len(buf) >= batch_size:
                    yield message(key, buf)
                    buffers[key] = []
        t += step
    for key, buf in buffers.items():
        if buf:
            yield message(key, buf)


def batches(
    city: City,
    start_ms: int,
    end_ms: int,
    *,
    batch_size: int = 500,
    rng: random.Random,
    bad_fraction: float = 0.001,
    gaps: bool = True,
    span_s: int = DEFAULT_SPAN_S,
) -> Iterator[tuple[bytes, bytes]]:
    """telemetry.v1 messages ``(kafka_key, json_value)`` for all sample times in [start_ms, end_ms).

    Sample times are on each resource's interval grid (multiples of ``interval_s`` since the
    epoch). Each message holds samples of one key (``shard_key``) only, at most ``batch_size``,
    and spans at most ``span_s`` of simulated time. Flaky resources skip whole 5-minute blocks
    when ``gaps``; about ``bad_fraction`` of the samples carry cpu 130 or a negative mem.
    """
    for key, value, _ in _batches(city, start_ms, end_ms, batch_size=batch_size, rng=rng,
                                  bad_fraction=bad_fraction, gaps=gaps, span_s=span_s):  # fmt: skip
        yield key, value


# --------------------------------------------------------------------------- producers


def _capped(city: City, rate: float | None) -> City:
    """The city itself, or its first resources whose natural rate stays within ``rate``."""
    if rate is None or rate >= samples_per_second(city):
        return city
    chosen: list[DemoResource] = []
    total = 0.0
    for r in city.resources:
        if chosen and total + 1.0 / r.interval_s > rate:
            break
        chosen.append(r)
        total += 1.0 / r.interval_s
    return replace(city, resources=chosen)


async def produce_live(
    send: Send,
    city: City,
    *,
    rate: float | None,
    duration_s: float | None,
    topic: str = TOPIC_TELEMETRY,
    clock: Callable[[], float] = time.time,
    stop: asyncio.Event | None = None,
    batch_size: int = 500,
    rng: random.Random | None = None,
    bad_fraction: float = 0.001,
    tick_s: float = LIVE_TICK_S,
) -> int:
    """Produce the samples falling due every tick (timestamps from ``clock``); return samples sent.

    ``rate`` caps the total samples/s: when it is below the natural rate, only the first
    resources of the city whose natural rate fits are driven (a rate above the natural rate
    changes nothing: drive more resources instead). Stops when ``stop`` is set or
    ``duration_s`` has passed (on ``clock`` or on the event loop's clock, whichever first).
    """
    drive = _capped(city, rate)
    rng = rng if rng is not None else random.Random()
    loop = asyncio.get_running_loop()
    mono0 = loop.time()
    start_ms = last_ms = int(clock() * 1000)
    end_ms = start_ms + int(duration_s * 1000) if duration_s is not None else None
    sent = 0
    while not (stop is not None and stop.is_set()):
        now_ms = int(clock() * 1000)
        final = end_ms is not None and (
            now_ms >= end_ms or loop.time() - mono0 >= duration_s  # type: ignore[operator]
        )
        upto = min(now_ms, end_ms) if end_ms is not None else now_ms  # never ahead of clock
        if upto > last_ms:
            for key, value, n in _batches(drive, last_ms, upto, batch_size=batch_size, rng=rng,
                                          bad_fraction=bad_fraction, gaps=True,
                                          span_s=DEFAULT_SPAN_S):  # fmt: skip
                if stop is not None and stop.is_set():
                    return sent
                await send(topic, key, value)
                sent += n
            last_ms = upto
        if final:
            break
        delay = tick_s
        if end_ms is not None:
            left = duration_s - (loop.time() - mono0)  # type: ignore[operator]
            delay = max(0.0, min(delay, left))
        if stop is None:
            await asyncio.sleep(delay)
        else:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
    return sent


async def backfill(
    send: Send,
    city: City,
    days: float,
    *,
    now_ms: int,
    batch_size: int = 500,
    topic: str = TOPIC_TELEMETRY,
    rng: random.Random | None = None,
    bad_fraction: float = 0.001,
) -> int:
    """Produce the history [now_ms - days, now_ms) as fast as ``send`` goes; return samples sent."""
    rng = rng if rng is not None else random.Random(now_ms)
    sent = 0
    for i, (key, value, n) in enumerate(
        _batches(city, now_ms - int(days * DAY_MS), now_ms, batch_size=batch_size, rng=rng,
                 bad_fraction=bad_fraction, gaps=True, span_s=DEFAULT_SPAN_S)  # fmt: skip
    ):
        await send(topic, key, value)
        sent += n
        if i % 64 == 63:
            await asyncio.sleep(0)  # generation is CPU work: let the rest of the loop run
    return sent
