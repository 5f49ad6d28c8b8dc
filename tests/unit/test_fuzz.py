"""Property-based fuzzing of every decoder and of the HTTP ingest (hypothesis).

Inputs: malformed and truncated JSON, random bytes, oversized strings and batches, nesting up to
10^4 deep, wrongly typed fields, non-UTF-8 bytes (also inside JSON strings), lone surrogates,
NaN/Infinity literals, huge integers, boundary values (0, 100, 100.0000001, -0.0, timestamps
exactly at the future/retention limits) and duplicate keys.

Properties: no exception escapes; every rejected input carries a reason of
``opscenter.wire.REASONS``; accepted + rejected samples == samples in the input; what is accepted
fits the ClickHouse columns it is written to (a value that does not would make every insert retry
fail and stall the worker).

Inputs are built by a generator of our own seeded by hypothesis (``st.randoms``), and one
hypothesis example runs ``PER_EXAMPLE`` independent inputs: hypothesis itself costs ~0.2 ms per
example on this machine (0.4 ms when the cores are busy), more than decoding an input, so this
keeps 10^5 inputs within the time budget. A failure prints the input that failed (shrinking would
not help a seeded generator). ``FUZZ_EXAMPLES`` sets the total number of inputs (default 100 000),
split between the four targets by ``SHARE``; ``test_zz_report`` prints the counts.

The HTTP target runs the real Starlette app through ``httpx.ASGITransport`` with a stand-in
``services`` (a real ``Registry``; ``send`` appends to a list instead of producing to a broker):
this is HTTP parsing only, hence a unit test; tests/integration/test_http_ingest.py covers the
real services.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import string
import struct
import sys
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import httpx
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.app import build_app
from opscenter.inventory import TS_MAX, TS_MIN, UINT32_MAX, Registry, Resource
from opscenter.settings import Settings
from opscenter.tokens import Principal
from opscenter.wire import REASONS, TelemetryBatch, deadletter_decoder, json_encoder, telemetry_decoder
from streams.ingest import Message, dead_letter
from streams.registry import decode_lifecycle, deadletter_row, event_row, resource_json, resource_row
from streams.validation import RATE_MAX, Limits, Reject, Validated, registry_check, validate_batch

TOTAL = int(os.environ.get("FUZZ_EXAMPLES", "100000"))
SHARE = {"telemetry": 0.5, "lifecycle": 0.2, "deadletter": 0.2, "http": 0.1}
PER_EXAMPLE = {"telemetry": 4, "lifecycle": 4, "deadletter": 4, "http": 1}
RUN: dict[str, int] = {}  # inputs run per target (printed by test_zz_report)


def fuzz(target: str) -> Callable:
    n = max(1, round(TOTAL * SHARE[target] / PER_EXAMPLE[target]))
    return settings(
        max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True
    )


def inputs(target: str, hr: random.Random) -> Iterator[random.Random]:
    """``PER_EXAMPLE[target]`` plain generators seeded by hypothesis, counted in ``RUN``."""
    for _ in range(PER_EXAMPLE[target]):
        RUN[target] = RUN.get(target, 0) + 1
        yield plain(hr)


def plain(hr: random.Random) -> random.Random:
    """A plain Random seeded by hypothesis: its own wraps every call (~1.5 µs each)."""
    return random.Random(hr.getrandbits(64))


NOW = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
NOW_MS = int(NOW.timestamp() * 1000)
LIMITS = Limits(max_future_s=300, retention_days=90, max_samples=8)
HI_MS = NOW_MS + LIMITS.max_future_s * 1000
LO_MS = NOW_MS - LIMITS.retention_days * 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def res(rid: str, provider: str = "p1", state: str = "delivered") -> Resource:
    return Resource(rid, provider, "u1", "d1", rid, 4, 8, 100, state, 15, NOW)


RESOURCES = {r.resource_id: r for r in [
    res("r1"), res("r2"), res("资源-03"), res("other", provider="p2"), res("gone", state="deregistered"),
    res("applied", state="applied"), res("accepted", state="accepted"), res("bp", state="baseline_passed"),
    res("bf", state="baseline_failed"), res("dr", state="deregistration_requested"), res("adj", state="adjusted"),
    res("ap", state="acceptance_passed"), res("refused", state="refused"),
]}  # fmt: skip
REGISTRY = Registry(RESOURCES)
IDS = [*RESOURCES, "nobody", "", "r1 ", "R1"]


# --- a generator of JSON-ish bytes ----------------------------------------------------------

NUMBERS = [
    b"0", b"-0", b"0.0", b"-0.0", b"100", b"100.0", b"100.0000001", b"99.9999999", b"1e2", b"1E2", b"1e-400",
    b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"18446744073709551615",
    b"18446744073709551616", b"9223372036854775807", b"-9223372036854775809", b"1" + b"0" * 400,
    b"3.4028234663852886e38", b"3.4028235e38", b"3.5e38", b"1e300", b"5e-324", b"4294967295", b"4294967296",
    b"65535", b"65536", b"-1", b"01", b".5", b"5.", b"-", b"+1", b"0x10", b"1_000", b"1e", b"--1", b"0.1e1",
]  # fmt: skip
SPECIAL_STRINGS = [
    b'"\xff\xfe"', b'"ab\xc3"', b'"\xed\xa0\x80"', b'"\\ud800"', b'"\\udc00\\ud800"', b'"\\ud83d\\ude00"',
    b'"\\u0000"', b'"\x01"', b'"\\x41"', b'"\\u12"', b'"', b'"\\"', b'"\xe4\xb8\xad\xe6\x96\x87"', b"''",
]  # fmt: skip
ALPHABET = string.ascii_letters + string.digits + " -_/#:\\\"'\n\t\x00\x7f" + "资源服务商威海é€😀\u2028\ufeff"
TS_SPECIAL = [
    "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59Z",
    "2026-02-30T00:00:00Z", "2026-11-24T08:00:00", "2026-11-24 08:00:00Z", "2026-11-24T24:00:00Z",
    "2026-11-24T23:59:60Z", "", "now", "2026-11-24t08:00:00z", "2026-11-24T08:00:00+08", "2026-11-24T08:00:00+0800",
    "2026-11-24T08:00:00-00:00", "2026-11-24T08:00:00.1234567890Z", "2026-11-24T08:00:00+24:00", "1764000000",
    "1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z", "2199-12-31T23:59:59.999Z", "2200-01-01T00:00:00Z",
    "2200-01-01T07:59:59+08:00", "1899-12-31T23:59:59Z",
]  # fmt: skip
OFFSETS_MIN = [0, 0, 480, -330, 840, -720, 345, 60]


def j(value: Any) -> bytes:
    return orjson.dumps(value)


def g_text(r: random.Random, n: int = 12) -> str:
    return "".join(r.choice(ALPHABET) for _ in range(r.randint(0, n)))


def g_str(r: random.Random) -> bytes:
    x = r.random()
    if x < 0.7:
        return j(g_text(r))
    if x < 0.9:
        return r.choice(SPECIAL_STRINGS)
    if x < 0.97:
        return b'"' + b"x" * r.choice([1000, 5000, 20_000]) + b'"'  # oversized
    return b'"' + bytes(r.randrange(256) for _ in range(r.randint(1, 6))) + b'"'  # any bytes inside a string


def g_num(r: random.Random) -> bytes:
    x = r.random()
    if x < 0.4:
        return r.choice(NUMBERS)
    if x < 0.6:
        return repr(r.uniform(-1, 101)).encode()
    if x < 0.8:
        return str(r.choice([1, -1]) * r.randrange(10 ** r.randint(1, 40))).encode()
    f = r.choice([r.random() * 10.0 ** r.randint(-300, 300), float("inf"), float("nan"), -0.0, 100.0, 0.0])
    return repr(f).encode()  # 'inf' and 'nan' are not JSON


def g_deep(r: random.Random) -> bytes:
    n = r.choice([64, 254, 255, 256, 500, 999, 1000, 1023, 1024, 1025, 2000, 5000, 10_000]) + r.randint(-2, 2)
    if r.random() < 0.5:
        return b"[" * n + (b"1" if r.random() < 0.5 else b"") + b"]" * n
    return b'{"a":' * n + b"1" + b"}" * n


def g_any(r: random.Random, depth: int = 0) -> bytes:
    x = r.random()
    if x < 0.15:
        return r.choice([b"null", b"true", b"false", b"True", b"nul"])
    if x < 0.35:
        return g_num(r)
    if x < 0.55:
        return g_str(r)
    if x < 0.6:
        return g_deep(r)
    if depth > 2:
        return b"[]"
    if x < 0.8:
        return b"[" + b",".join(g_any(r, depth + 1) for _ in range(r.randint(0, 4))) + b"]"
    return g_obj(r, [(g_str(r), g_any(r, depth + 1)) for _ in range(r.randint(0, 4))])


def g_obj(r: random.Random, pairs: list[tuple[bytes, bytes]]) -> bytes:
    if r.random() < 0.1:
        r.shuffle(pairs)
    sep = b", " if r.random() < 0.1 else b","
    return b"{" + sep.join(k + b":" + v for k, v in pairs) + b"}"


def g_fields(r: random.Random, fields: list[tuple[str, Callable[[], bytes], float]]) -> bytes:
    """An object of ``fields`` (name, value maker, chance to be left out), with extras and duplicates."""
    pairs = []
    for name, make, p_absent in fields:
        if r.random() < p_absent:
            continue
        value = make() if r.random() < 0.95 else g_any(r)  # a wrongly typed field
        pairs.append((j(name), value))
        if r.random() < 0.02:  # the same key twice: the last one wins (msgspec, orjson and json agree)
            pairs.insert(r.randrange(len(pairs) + 1), (j(name), g_any(r)))
    if r.random() < 0.1:
        pairs.append((j(r.choice(["x", "extra", "cpu", "资源"])), g_any(r)))  # unknown field
    return g_obj(r, pairs)


def g_ts(r: random.Random, now_ms: int, hi_ms: int, lo_ms: int) -> bytes:
    if r.random() < 0.1:
        return j(r.choice(TS_SPECIAL)) if r.random() < 0.9 else g_num(r)
    base = r.choice([hi_ms, hi_ms + 1, hi_ms - 1, hi_ms + 1000, lo_ms, lo_ms - 1, lo_ms + 1, lo_ms - 1000,
                     now_ms, now_ms - 60_000, now_ms - r.randrange(86_400_000), r.randint(lo_ms - 86_400_000,
                     hi_ms + 86_400_000)])  # fmt: skip
    off = r.choice(OFFSETS_MIN)
    local = EPOCH + timedelta(milliseconds=base, minutes=off)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    frac = r.random()
    if frac < 0.4:
        text += f".{base % 1000:03d}"
    elif frac < 0.5:
        text += f".{base % 1000:03d}{r.randrange(1000):03d}"  # below the millisecond
    elif base % 1000:
        text += f".{base % 1000:03d}"
    if off == 0 and r.random() < 0.5:
        return j(text + "Z")
    sign = "-" if off < 0 else "+"
    return j(f"{text}{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}")


def g_pct(r: random.Random) -> bytes:
    x = r.random()
    if x < 0.8:
        return repr(round(r.uniform(0, 100), r.randint(0, 6))).encode()
    return g_num(r)


def g_rate(r: random.Random) -> bytes:
    return repr(r.uniform(0, 1e6)).encode() if r.random() < 0.5 else (b"null" if r.random() < 0.3 else g_num(r))


def g_sample(r: random.Random, now_ms: int, hi_ms: int, lo_ms: int) -> bytes:
    return g_fields(r, [
        ("resource_id", lambda: j(r.choice(IDS)) if r.random() < 0.9 else g_str(r), 0.02),
        ("ts", lambda: g_ts(r, now_ms, hi_ms, lo_ms), 0.02),
        ("cpu_pct", lambda: g_pct(r), 0.02),
        ("mem_pct", lambda: g_pct(r), 0.02),
        ("storage_pct", lambda: g_pct(r), 0.02),
        ("net_rx_kbps", lambda: g_rate(r), 0.5),
        ("net_tx_kbps", lambda: g_rate(r), 0.5),
    ])  # fmt: skip


def g_batch(r: random.Random, now_ms: int, hi_ms: int, lo_ms: int, max_samples: int, http: bool) -> bytes:
    def samples() -> bytes:
        n = r.randint(0, 4) if r.random() < 0.8 else r.randint(0, max_samples + 3)
        items = [g_sample(r, now_ms, hi_ms, lo_ms) if r.random() < 0.95 else g_any(r) for _ in range(n)]
        return b"[" + b",".join(items) + b"]"

    def provider() -> bytes:
        return r.choice([b'"p1"'] * 8 + [b'"p2"', b"null"] if http else [b'"p1"'] * 9 + [b'"p2"'])

    return g_fields(r, [
        ("provider_id", provider, 0.6 if http else 0.03),
        ("batch_id", lambda: j(f"b-{r.randrange(10**6)}") if r.random() < 0.9 else g_str(r), 0.03),
        ("samples", samples, 0.03),
        ("v", lambda: b"1" if r.random() < 0.7 else g_num(r), 0.7),
    ])  # fmt: skip


def mutate(r: random.Random, raw: bytes) -> bytes:
    for _ in range(r.randint(1, 3)):
        i = r.randrange(len(raw) + 1)
        x = r.random()
        if x < 0.25:
            raw = raw[:i]
        elif x < 0.5 and raw:
            raw = raw[: max(0, i - 1)] + bytes([r.randrange(256)]) + raw[i:]
        elif x < 0.7:
            raw = raw[:i] + bytes(r.randrange(256) for _ in range(r.randint(1, 4))) + raw[i:]
        elif x < 0.8:
            raw = raw[:i] + raw[i + r.randint(1, 8) :]
        elif x < 0.9:
            raw = r.choice([b"\xef\xbb\xbf", b"\xff\xfe", b" \n\t", b"\x00"]) + raw
        else:
            raw = raw[:i] + raw[max(0, i - 10) : i] + raw[i:]
    return raw


def top(r: random.Random, message: Callable[[], bytes]) -> bytes:
    """One input: mostly a generated message, sometimes mutated, random bytes, another JSON value or deep nesting."""
    x = r.random()
    if x < 0.65:
        return message()
    if x < 0.85:
        return mutate(r, message())
    if x < 0.9:
        return bytes(r.randrange(256) for _ in range(r.randint(0, 64)))
    if x < 0.95:
        return g_any(r)
    inner = message()  # deep nesting in a field the decoder does not know (it still recurses)
    return inner[:-1] + b',"zz":' + g_deep(r) + b"}" if inner.endswith(b"}") else g_deep(r)


# --- helpers for the properties ---------------------------------------------------------------


def oracle(raw: bytes) -> Any:
    """The input as the standard library reads it (duplicate keys: last wins), or None."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5000))
    try:
        return json.loads(raw.decode("utf-8", "replace"))  # msgspec does not check fields it skips
    except (ValueError, RecursionError):
        return None
    finally:
        sys.setrecursionlimit(limit)


def clickhouse_string(s: object) -> bool:
    if not isinstance(s, str):
        return False
    s.encode("utf-8")  # raises on lone surrogates: such a string could never be inserted
    return True


def ms_storable(ms: object) -> bool:
    return isinstance(ms, int) and _ms(TS_MIN) <= ms < _ms(TS_MAX)


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def show(raw: bytes) -> str:
    return repr(raw[:3000]) + (f"... ({len(raw)} bytes)" if len(raw) > 3000 else "")


def check_reject(rej: Reject) -> None:
    assert rej.reason in REASONS, rej.reason
    assert isinstance(rej.detail, str) and isinstance(rej.payload, bytes)
    # the dead letter the stream would write must encode and decode again
    d = dead_letter(rej, Message(3, 77, b""), NOW_MS, 1)
    assert deadletter_decoder.decode(json_encoder.encode(d)).reason == rej.reason


# --- telemetry.v1 (streams/validation.validate_batch) -----------------------------------------


def check_telemetry(raw: bytes, v: Validated) -> None:
    for rej in v.rejects:
        check_reject(rej)
    g = v.good
    n_good = len(g)
    cols = (g.ts_ms, g.resource_id, g.provider_id, g.cpu, g.mem, g.storage, g.net_rx, g.net_tx)
    assert all(len(c) == n_good for c in cols)
    whole = [x for x in v.rejects if x.payload == raw]
    if whole:  # the message as a whole: nothing else is accepted or rejected
        assert len(v.rejects) == 1 and n_good == 0
        assert whole[0].reason in ("unparseable", "schema", "too_large")
        if whole[0].reason == "too_large":
            assert len(oracle(raw)["samples"]) > LIMITS.max_samples
        return
    doc = oracle(raw)
    assert isinstance(doc, dict) and isinstance(doc.get("samples"), list), "judged per sample, but no batch"
    assert n_good + len(v.rejects) == len(doc["samples"]), "samples lost or invented"
    assert v.provider_id == doc["provider_id"] and v.batch_id == doc["batch_id"]
    assert all(x.detail != "sample failed validation" for x in v.rejects), "fast and detailed checks disagree"
    for i in range(n_good):
        assert LO_MS <= g.ts_ms[i] <= HI_MS
        assert all(isinstance(x, float) and 0.0 <= x <= 100.0 for x in (g.cpu[i], g.mem[i], g.storage[i]))
        for rate in (g.net_rx[i], g.net_tx[i]):
            assert rate is None or (0.0 <= rate <= RATE_MAX)
            struct.pack("<f", rate or 0.0)  # fits ClickHouse Float32
        assert clickhouse_string(g.resource_id[i]) and g.provider_id[i] == v.provider_id
        assert registry_check(SimpleNamespace(resource_id=g.resource_id[i]), v.provider_id, REGISTRY) is None  # type: ignore[arg-type]


def g_telemetry(r: random.Random) -> bytes:
    return top(r, lambda: g_batch(r, NOW_MS, HI_MS, LO_MS, LIMITS.max_samples, http=False))


@fuzz("telemetry")
@given(st.randoms(use_true_random=True))
def test_fuzz_telemetry(hr: random.Random) -> None:
    for r in inputs("telemetry", hr):
        raw = g_telemetry(r)
        try:
            check_telemetry(raw, validate_batch(raw, REGISTRY, NOW_MS, LIMITS))
        except BaseException as exc:
            raise AssertionError(f"telemetry input {show(raw)}") from exc


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"cpu_pct": 0}, None),
        ({"cpu_pct": 100}, None),
        ({"cpu_pct": -0.0}, None),
        ({"cpu_pct": 100.0000001}, "out_of_range"),
        ({"cpu_pct": -1e-300}, "out_of_range"),
        ({"net_rx_kbps": 3.4028234663852886e38}, None),
        ({"net_rx_kbps": 1e300}, "out_of_range"),  # accepted before: the Float32 insert then failed forever
        ({"net_tx_kbps": -0.0}, None),
        ({"ts": HI_MS}, None),
        ({"ts": HI_MS + 1}, "future_timestamp"),
        ({"ts": LO_MS}, None),
        ({"ts": LO_MS - 1}, "too_old"),
        ({"ts": "2026-11-24T08:00:00"}, "schema"),
    ],
)
def test_boundaries(fields: dict[str, Any], reason: str | None) -> None:
    ts = fields.pop("ts", NOW_MS)
    s = {"resource_id": "r1", "ts": ts if isinstance(ts, str) else (EPOCH + timedelta(milliseconds=ts)).isoformat(),
         "cpu_pct": 1.0, "mem_pct": 1.0, "storage_pct": 1.0, **fields}  # fmt: skip
    v = validate_batch(json.dumps({"provider_id": "p1", "batch_id": "b", "samples": [s]}).encode(), REGISTRY, NOW_MS,
                       LIMITS)  # fmt: skip
    assert [x.reason for x in v.rejects] == ([reason] if reason else []) and len(v.good) == (0 if reason else 1)


@pytest.mark.parametrize(
    "raw, reason",
    [
        # RecursionError escaped validate_batch (the agent's catch-all turned it into "schema")
        (b'{"provider_id":"p1","batch_id":"b","samples":[],"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}", "unparseable"),
        # orjson cannot write nesting deeper than 254: TypeError escaped the per-sample fallback
        (b'{"provider_id":"p1","batch_id":"b","samples":[{"x":' + b"[" * 300 + b"]" * 300 + b"}]}", "schema"),
    ],
)
def test_crashes_found(raw: bytes, reason: str) -> None:
    v = validate_batch(raw, REGISTRY, NOW_MS, LIMITS)
    assert [x.reason for x in v.rejects] == [reason]


# --- lifecycle.v1 (streams/registry.decode_lifecycle + opscenter/inventory.apply_event) --------

LIFECYCLE_TYPES = ["applied", "accepted", "refused", "baseline_passed", "baseline_failed", "delivered",
                   "acceptance_passed", "adjusted", "deregistration_requested", "deregistered"]  # fmt: skip
SPEC_INTS = [b"0", b"1", b"-1", b"4294967295", b"4294967296", b"9223372036854775807", b"9223372036854775808",
             b"18446744073709551616", b"1e3", b"1.5", b'"4"', b"true", b"null"]  # fmt: skip
LIFE_TS = ["1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z", "2199-12-31T23:59:59.999+00:00",
           "2200-01-01T00:00:00Z", "2200-01-01T07:59:59+08:00", "0001-01-01T00:00:00+14:00",
           "9999-12-31T23:59:59-12:00", "2026-11-24T16:00:00+08:00", "2026-11-24T08:00:00"]  # fmt: skip


def g_int(r: random.Random) -> bytes:
    return str(r.randint(1, 64)).encode() if r.random() < 0.7 else r.choice(SPEC_INTS)


def g_lifecycle(r: random.Random) -> bytes:
    def spec() -> bytes:
        if r.random() < 0.1:
            return b"null"
        return g_fields(r, [("vcpu", lambda: g_int(r), 0.03), ("mem_gb", lambda: g_int(r), 0.03),
                            ("storage_gb", lambda: g_int(r), 0.03)])  # fmt: skip

    def ts() -> bytes:
        return j(r.choice(LIFE_TS)) if r.random() < 0.3 else g_ts(r, NOW_MS, HI_MS, LO_MS)

    return top(r, lambda: g_fields(r, [
        ("event_id", lambda: j(f"e-{r.randrange(10**6)}") if r.random() < 0.9 else g_str(r), 0.02),
        ("resource_id", lambda: j(r.choice(IDS)) if r.random() < 0.9 else g_str(r), 0.02),
        ("type", lambda: j(r.choice(LIFECYCLE_TYPES)) if r.random() < 0.9 else g_str(r), 0.02),
        ("ts", ts, 0.02),
        ("provider_id", lambda: r.choice([b'"p1"', b'"p1"', b'"p2"']) if r.random() < 0.9 else g_str(r), 0.02),
        ("unit_id", lambda: g_str(r), 0.6),
        ("district_id", lambda: g_str(r), 0.6),
        ("name", lambda: g_str(r), 0.6),
        ("spec", spec, 0.3),
        ("interval_s", lambda: g_int(r), 0.6),
        ("resource_class", lambda: j(r.choice(["gpu", "standard", "high-mem"])) if r.random() < 0.7 else g_str(r), 0.6),
        ("v", lambda: b"1", 0.8),
    ]))  # fmt: skip


def check_lifecycle(raw: bytes) -> None:
    from opscenter.inventory import LifecycleError

    registry = Registry(RESOURCES)
    ev = decode_lifecycle(raw)
    if isinstance(ev, Reject):
        assert ev.reason in ("schema", "unparseable") and ev.payload == raw
        check_reject(ev)
        return
    before = registry.get(ev.resource_id)
    try:
        res = registry.apply(ev)
    except LifecycleError as exc:  # dead-lettered as invalid_lifecycle: nothing changed
        check_reject(Reject("invalid_lifecycle", str(exc), raw, ev.provider_id))
        assert registry.get(ev.resource_id) is before
        return
    assert res.state == ev.type and registry.get(ev.resource_id) is res
    # what the agent then writes must fit ClickHouse: UInt32 spec, DateTime64, UTF-8 strings
    row = resource_row(res, NOW_MS * 1000)
    erow = event_row(ev, res)
    for value in (row[5], row[6], row[7], row[9], *erow[7:10]):
        assert value is None or (isinstance(value, int) and 0 <= value <= UINT32_MAX), value
    for ms in (row[10], row[11], row[12], erow[3]):
        assert ms is None or ms_storable(ms), ms
    assert all(clickhouse_string(x) for x in (*row[:5], row[8], row[14], *erow[:3], *erow[4:7], erow[10]))
    msgspec.json.decode(resource_json(res))


@fuzz("lifecycle")
@given(st.randoms(use_true_random=True))
def test_fuzz_lifecycle(hr: random.Random) -> None:
    for r in inputs("lifecycle", hr):
        raw = g_lifecycle(r)
        try:
            check_lifecycle(raw)
        except BaseException as exc:
            raise AssertionError(f"lifecycle input {show(raw)}") from exc


@pytest.mark.parametrize(
    "raw",
    [
        # a UInt32 column cannot hold it: every insert retry of the registry agent failed
        b'{"event_id":"e","resource_id":"n","type":"delivered","ts":"2026-11-24T08:00:00Z","provider_id":"p1",'
        b'"spec":{"vcpu":4294967296,"mem_gb":8,"storage_gb":1}}',
        # a DateTime64 read back at start as a Python datetime: year 1 broke every later start
        b'{"event_id":"e","resource_id":"n","type":"delivered","ts":"0001-01-01T00:00:00+14:00",'
        b'"provider_id":"p1","spec":{"vcpu":4,"mem_gb":8,"storage_gb":1}}',
        b'{"event_id":"e","resource_id":"n","type":"delivered","ts":"2026-11-24T08:00:00Z","provider_id":"p1",'
        b'"spec":{"vcpu":4,"mem_gb":8,"storage_gb":1},"interval_s":4294967296}',
    ],
)
def test_lifecycle_out_of_range_is_invalid(raw: bytes) -> None:
    from opscenter.inventory import LifecycleError

    ev = decode_lifecycle(raw)
    assert not isinstance(ev, Reject)
    with pytest.raises(LifecycleError):
        Registry().apply(ev)


def test_lifecycle_deep_nesting_is_unparseable() -> None:
    # a RecursionError escaped RegistryStage.process and LifecycleReader.catch_up (which the
    # ingest agent calls): one message crashed both agents
    raw = b'{"event_id":"e","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    ev = decode_lifecycle(raw)
    assert isinstance(ev, Reject) and ev.reason == "unparseable"


# --- deadletter.v1 (streams/registry.deadletter_row) -------------------------------------------

DL_INTS = [b"0", b"-1", b"65535", b"65536", b"4294967295", b"4294967296", b"9223372036854775807",
           b"18446744073709551615", b"18446744073709551616", b"1.0", b'"1"', b"null"]  # fmt: skip


def g_deadletter(r: random.Random) -> tuple[bytes, bool]:
    """A deadletter.v1 input, and whether the product wrote it (then it must be storable)."""
    if r.random() < 0.1:
        rej = Reject(r.choice(REASONS), g_text(r, 600), bytes(r.randrange(256) for _ in range(r.randint(0, 20))),
                     g_text(r), g_text(r))  # fmt: skip
        msg = Message(r.randrange(2**16), r.randrange(2**63), b"", r.choice(["telemetry.v1", "lifecycle.v1"]))
        return json_encoder.encode(dead_letter(rej, msg, NOW_MS - r.randrange(10**12), r.randrange(2**32))), True

    def n() -> bytes:
        return str(r.randrange(1000)).encode() if r.random() < 0.6 else r.choice(DL_INTS)

    def ts() -> bytes:
        return j(r.choice(LIFE_TS)) if r.random() < 0.3 else g_ts(r, NOW_MS, HI_MS, LO_MS)

    return top(r, lambda: g_fields(r, [
        ("reason", lambda: j(r.choice(REASONS)) if r.random() < 0.9 else g_str(r), 0.02),
        ("detail", lambda: g_str(r), 0.02),
        ("source", lambda: g_fields(r, [("topic", lambda: g_str(r), 0.02), ("partition", n, 0.02),
                                        ("offset", n, 0.02)]), 0.02),  # fmt: skip
        ("provider_id", lambda: g_str(r), 0.02),
        ("payload", lambda: g_str(r), 0.02),
        ("ingest_ts", ts, 0.02),
        ("batch_id", lambda: g_str(r), 0.5),
        ("index", n, 0.5),
        ("v", lambda: b"1", 0.8),
    ])), False  # fmt: skip


def check_deadletter(raw: bytes, ours: bool) -> None:
    row = deadletter_row(raw)
    if isinstance(row, Reject):
        assert not ours, f"our own dead letter refused: {row.reason} {row.detail}"
        check_reject(row)
        return
    assert ms_storable(row[0])
    assert all(clickhouse_string(x) for x in (*row[1:7],))
    assert 0 <= row[7] < 2**16 and 0 <= row[8] < 2**64 and 0 <= row[9] <= UINT32_MAX


@fuzz("deadletter")
@given(st.randoms(use_true_random=True))
def test_fuzz_deadletter(hr: random.Random) -> None:
    for r in inputs("deadletter", hr):
        raw, ours = g_deadletter(r)
        try:
            check_deadletter(raw, ours)
        except BaseException as exc:
            raise AssertionError(f"dead letter input {show(raw)}") from exc


# --- HTTP ingest (dashboard/ingest.post_telemetry through the real Starlette app) --------------

HTTP_SETTINGS = Settings(ingest_max_body_bytes=32_768, ingest_max_samples=8, ingest_rate_samples_s=0, demo=False)
ERROR_CODES = {400: {"schema", "unparseable"}, 403: {"foreign_provider", "foreign_resource"}, 413: {"too_large"}}


class _Tokens:
    async def lookup(self, token: str) -> Principal | None:
        return Principal("p1", "provider", "p1") if token == "tok-p1" else None


class _Reader:
    async def catch_up(self) -> bool:
        return False


@pytest.fixture(scope="module")
def http() -> Iterator[tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, list[tuple[str, bytes, bytes]]]]:
    sent: list[tuple[str, bytes, bytes]] = []

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        sent.append((topic, key or b"", value))

    services = SimpleNamespace(settings=HTTP_SETTINGS, registry=REGISTRY, lifecycle_reader=_Reader(), send=send,
                               store=None)  # fmt: skip
    app = build_app(services)
    app.state.tokens = _Tokens()
    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    yield loop, client, sent
    loop.run_until_complete(client.aclose())
    loop.close()


def check_http(raw: bytes, status: int, doc: dict[str, Any], sent: list[tuple[str, bytes, bytes]]) -> None:
    assert status in (202, 400, 403, 413), status
    if status != 202:
        assert doc["error"] in ERROR_CODES[status] and doc["message"] and doc["message_en"]
    if status == 413 and len(raw) <= HTTP_SETTINGS.ingest_max_body_bytes:
        assert len(oracle(raw)["samples"]) > HTTP_SETTINGS.ingest_max_samples
    if status == 202 or doc.get("error") == "foreign_resource":
        samples = oracle(raw)["samples"]
        rejected = doc["rejected"]
        assert doc["accepted"] + len(rejected) == len(samples), "samples lost or invented"
        assert [x["index"] for x in rejected] == sorted({x["index"] for x in rejected})
        assert all(0 <= x["index"] < len(samples) and x["reason"] in REASONS for x in rejected)
        produced = [telemetry_decoder.decode(v) for _, _, v in sent]
        assert sum(len(b.samples) for b in produced) == doc["accepted"]
        for batch in produced:  # the stream accepts what HTTP accepted (bar a clock tick at the limits)
            assert isinstance(batch, TelemetryBatch) and batch.provider_id == "p1"
            v = validate_batch(json_encoder.encode(batch), REGISTRY, int(time.time() * 1000))
            assert {x.reason for x in v.rejects} <= {"too_old", "future_timestamp"}
    else:
        assert not sent


@fuzz("http")
@given(st.randoms(use_true_random=True))
def test_fuzz_http_ingest(http: Any, hr: random.Random) -> None:
    loop, client, sent = http
    for r in inputs("http", hr):
        now_ms = int(time.time() * 1000)
        hi, lo = now_ms + HTTP_SETTINGS.max_future_s * 1000, now_ms - HTTP_SETTINGS.raw_retention_days * 86_400_000
        raw = top(r, lambda: g_batch(r, now_ms, hi, lo, HTTP_SETTINGS.ingest_max_samples, http=True))
        sent.clear()
        resp = loop.run_until_complete(
            client.post("/api/v1/telemetry", content=raw, headers={"authorization": "Bearer tok-p1"})
        )
        try:
            check_http(raw, resp.status_code, resp.json(), sent)
        except BaseException as exc:
            raise AssertionError(f"HTTP body {show(raw)} → {resp.status_code} {resp.text[:500]}") from exc


@pytest.mark.parametrize(
    "raw",
    [
        # msgspec decodes list[Any] recursively: RecursionError → 500
        b'{"batch_id":"b","samples":[' + b"[" * 10_000 + b"]" * 10_000 + b"]}",
        # an integer beyond 64 bits: orjson could not re-encode the sample (TypeError → 500)
        b'{"batch_id":"b","samples":[{"resource_id":"r1","ts":"2026-11-24T08:00:00Z","cpu_pct":'
        + b"1" * 30 + b',"mem_pct":1,"storage_pct":1}]}',
        # nesting deeper than orjson writes (254), inside one sample: TypeError → 500
        b'{"batch_id":"b","samples":[{"x":' + b"[" * 300 + b"]" * 300 + b"}]}",
    ],
)
def test_http_crashes_found(http: Any, raw: bytes) -> None:
    loop, client, sent = http
    sent.clear()
    resp = loop.run_until_complete(client.post("/api/v1/telemetry", content=raw,
                                               headers={"authorization": "Bearer tok-p1"}))  # fmt: skip
    assert resp.status_code in (202, 400), resp.text
    if resp.status_code == 202:
        assert resp.json()["accepted"] == 0 and len(resp.json()["rejected"]) == 1


def test_zz_report(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints how many inputs ran per target (run with -s to see it)."""
    with capsys.disabled():
        print(f"\nfuzz inputs run: {RUN} total {sum(RUN.values())} (FUZZ_EXAMPLES={TOTAL})")
