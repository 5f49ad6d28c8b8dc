"""Validation of telemetry.v1 messages: every reason, and good samples kept beside bad ones."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from opscenter.inventory import Registry, Resource
from streams.validation import Limits, validate_batch

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
NOW_MS = int(NOW.timestamp() * 1000)


def res(rid: str, provider: str = "p1", state: str = "delivered") -> Resource:
    return Resource(rid, provider, "u1", "d1", rid, 4, 8, 100, state, 15, NOW)


@pytest.fixture
def registry() -> Registry:
    return Registry({r.resource_id: r for r in [
        res("r1"), res("r2"), res("other", provider="p2"), res("gone", state="deregistered"),
        res("applied", state="applied"),
    ]})  # fmt: skip


def sample(rid: str = "r1", ts: str = "2026-11-24T07:59:00Z", cpu: object = 10.0, **kw: object) -> dict:
    return {"resource_id": rid, "ts": ts, "cpu_pct": cpu, "mem_pct": 20.0, "storage_pct": 30.0, **kw}


def batch(*samples: dict, provider: str = "p1") -> bytes:
    return orjson.dumps({"provider_id": provider, "batch_id": "b1", "samples": list(samples)})


def reasons(v) -> list[str]:
    return [r.reason for r in v.rejects]


def test_good_batch_all_accepted(registry: Registry) -> None:
    v = validate_batch(batch(sample("r1"), sample("r2", cpu=55.5)), registry, NOW_MS)
    assert v.rejects == []
    assert v.good.resource_id == ["r1", "r2"]
    assert v.good.cpu == [10.0, 55.5]
    assert v.good.ts_ms == [NOW_MS - 60_000] * 2
    assert v.provider_id == "p1" and v.batch_id == "b1"


@pytest.mark.parametrize(
    "bad, reason",
    [
        (sample(cpu=130.0), "out_of_range"),
        (sample(cpu=-0.1), "out_of_range"),
        (sample(net_rx_kbps=-5.0), "out_of_range"),
        (sample(ts="2026-11-24T08:06:00Z"), "future_timestamp"),
        (sample(ts="2026-08-01T00:00:00Z"), "too_old"),
        (sample(rid="nobody"), "unregistered_resource"),
        (sample(rid="applied"), "unregistered_resource"),
        (sample(rid="other"), "foreign_resource"),
        (sample(rid="gone"), "deregistered_resource"),
        (sample(cpu="high"), "schema"),
        ({"resource_id": "r1", "ts": "2026-11-24T07:59:00Z"}, "schema"),
        (sample(ts="2026-11-24T07:59:00"), "schema"),  # no time zone
    ],
)
def test_bad_sample_rejected_good_kept(registry: Registry, bad: dict, reason: str) -> None:
    v = validate_batch(batch(sample("r1"), bad, sample("r2")), registry, NOW_MS)
    assert reasons(v) == [reason]
    assert v.good.resource_id == ["r1", "r2"], "a bad sample never drops the good ones"
    assert v.rejects[0].provider_id == "p1" and v.rejects[0].batch_id == "b1"
    assert v.rejects[0].detail


def test_nan_is_out_of_range(registry: Registry) -> None:
    raw = batch(sample("r1")).replace(b'"cpu_pct":10.0', b'"cpu_pct":NaN')
    v = validate_batch(raw, registry, NOW_MS)
    # NaN is not JSON: the whole message is unparseable, and says so
    assert reasons(v) == ["unparseable"]


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"not json", "unparseable"),
        (b"\xff\xfe\x00", "unparseable"),
        (b"[1, 2]", "schema"),
        (orjson.dumps({"provider_id": "p1", "samples": []}), "schema"),
        (orjson.dumps({"provider_id": 5, "batch_id": "b", "samples": []}), "schema"),
    ],
)
def test_bad_message_rejected_whole(registry: Registry, raw: bytes, reason: str) -> None:
    v = validate_batch(raw, registry, NOW_MS)
    assert reasons(v) == [reason]
    assert v.rejects[0].payload == raw
    assert len(v.good) == 0


def test_too_many_samples(registry: Registry) -> None:
    v = validate_batch(batch(*[sample("r1")] * 11), registry, NOW_MS, Limits(max_samples=10))
    assert reasons(v) == ["too_large"] and len(v.good) == 0


def test_huge_integer_does_not_crash(registry: Registry) -> None:
    raw = b'{"provider_id":"p1","batch_id":"b","samples":[{"resource_id":"r1","ts":"2026-11-24T07:59:00Z",' \
          b'"cpu_pct":1' + b"0" * 40 + b',"mem_pct":1,"storage_pct":1}]}'
    v = validate_batch(raw, registry, NOW_MS)
    assert len(v.rejects) == 1 and v.rejects[0].reason in {"unparseable", "schema", "out_of_range"}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"provider_id":"p\xff","batch_id":"b","samples":[]}',  # invalid UTF-8 inside a string
        b'{"provider_id":"p1","batch_id":"b","samples":[{"resource_id":"r\xc3(","ts":"2026-11-24T07:59:00Z",'
        b'"cpu_pct":1,"mem_pct":1,"storage_pct":1}]}',
    ],
)
def test_invalid_utf8_inside_strings_is_unparseable_not_a_crash(registry: Registry, raw: bytes) -> None:
    v = validate_batch(raw, registry, NOW_MS)
    assert [r.reason for r in v.rejects] == ["unparseable"]


# --- the worker's re-check before "unregistered" (streams/ingest.IngestPipeline) --------------


async def test_worker_rechecks_unregistered_once_then_trusts_the_answer(registry: Registry) -> None:
    from streams.ingest import IngestPipeline, Message

    reads = 0

    async def catch_up() -> bool:  # the lifecycle reader: "new-1" arrives with the first read
        nonlocal reads
        reads += 1
        registry.put(res("new-1"))
        return True

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        raise AssertionError("not used")

    pipe = IngestPipeline(None, None, registry, send, registry_catch_up=catch_up)  # type: ignore[arg-type]
    now = NOW_MS
    chunk = [Message(0, 0, batch(sample("new-1"), sample("nobody")))]
    checked = await pipe._recheck_unregistered(chunk, [(m, pipe._validate(m, now)) for m in chunk], now)
    # the just-registered resource is accepted after the read; the unknown one stays rejected
    assert checked[0][1].good.resource_id == ["new-1"] and reasons(checked[0][1]) == ["unregistered_resource"]
    # a provider that keeps streaming for "nobody" does not make every batch wait for a read
    for offset in range(1, 20):
        m = Message(0, offset, batch(sample("nobody")))
        await pipe._recheck_unregistered([m], [(m, pipe._validate(m, now))], now)
    assert reads == 1
