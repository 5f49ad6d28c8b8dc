"""Decode and validate one telemetry.v1 message, batch at a time; pure (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import msgspec
import orjson

from opscenter.inventory import SUPERVISED_STATES, Registry
from opscenter.wire import Sample, telemetry_decoder

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PCT_FIELDS = ("cpu_pct", "mem_pct", "storage_pct")
#: largest value of ClickHouse Float32 (the rate columns): a bigger one can never be inserted
RATE_MAX = 3.4028234663852886e38
_sample_decoder = msgspec.json.Decoder(Sample)


@dataclass(frozen=True, slots=True)
class Limits:
    max_future_s: int = 300
    retention_days: int = 90
    max_samples: int = 5000


@dataclass(slots=True)
class Reject:
    """One rejected input: a whole message (``sample`` is None) or a single sample."""

    reason: str
    detail: str
    payload: bytes
    provider_id: str = ""
    batch_id: str = ""


@dataclass(slots=True)
class Columns:
    """Accepted samples, column by column, ready for a columnar insert."""

    ts_ms: list[int] = field(default_factory=list)
    resource_id: list[str] = field(default_factory=list)
    provider_id: list[str] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    mem: list[float] = field(default_factory=list)
    storage: list[float] = field(default_factory=list)
    net_rx: list[float | None] = field(default_factory=list)
    net_tx: list[float | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts_ms)


@dataclass(slots=True)
class Validated:
    provider_id: str
    batch_id: str
    good: Columns
    rejects: list[Reject]


def _ms(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError("timestamp without time zone")
    return int((ts - _EPOCH).total_seconds() * 1000)


def check_sample(s: Sample, now_ms: int, limits: Limits) -> tuple[str, str] | None:
    for name in _PCT_FIELDS:
        v = getattr(s, name)
        if not (0.0 <= v <= 100.0):  # also false for NaN
            return "out_of_range", f"{name}={v!r} not in [0, 100]"
    for name in ("net_rx_kbps", "net_tx_kbps"):
        v = getattr(s, name)
        if v is not None and not (0.0 <= v <= RATE_MAX):
            return "out_of_range", f"{name}={v!r} must be a number in [0, {RATE_MAX:.4g}]"
    ts_ms = _ms(s.ts)
    if ts_ms > now_ms + limits.max_future_s * 1000:
        return "future_timestamp", f"ts {s.ts.isoformat()} is more than {limits.max_future_s}s ahead"
    if ts_ms < now_ms - limits.retention_days * 86_400_000:
        return "too_old", f"ts {s.ts.isoformat()} is older than the {limits.retention_days}-day retention"
    return None


def registry_check(s: Sample, provider_id: str, registry: Registry) -> tuple[str, str] | None:
    res = registry.get(s.resource_id)
    if res is None:
        return "unregistered_resource", f"resource {s.resource_id!r} is not registered (§34)"
    if res.provider_id != provider_id:
        return "foreign_resource", f"resource {s.resource_id!r} belongs to another provider"
    if res.state == "deregistered":
        return "deregistered_resource", f"resource {s.resource_id!r} was deregistered"
    if res.state not in SUPERVISED_STATES:
        return "unregistered_resource", f"resource {s.resource_id!r} is {res.state!r}, not delivered"
    return None


def decode_samples_one_by_one(raw_samples: list[object]) -> list[Sample | Reject]:
    """Per-sample decode, used only when the fast typed decode of the whole batch failed."""
    out: list[Sample | Reject] = []
    for item in raw_samples:
        try:
            payload = orjson.dumps(item)
        except TypeError:  # orjson writes neither ints beyond 64 bits nor nesting deeper than 254
            try:
                payload = msgspec.json.encode(item)
            except (TypeError, ValueError, RecursionError) as exc:
                out.append(Reject("schema", f"sample cannot be read: {exc}", b'"(not re-encodable)"'))
                continue
        try:
            out.append(_sample_decoder.decode(payload))
        except msgspec.ValidationError as exc:
            out.append(Reject("schema", str(exc), payload))
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            out.append(Reject("unparseable", str(exc), payload))
        except RecursionError:
            out.append(Reject("schema", "sample nested too deeply", payload))
    return out


def validate_batch(
    raw: bytes, registry: Registry, now_ms: int, limits: Limits = Limits()
) -> Validated:
    """Split one message into accepted sample columns and per-input rejects.

    A bad sample never drops the good samples of its batch: the fast path decodes the
    batch as typed structs; if that fails, samples are decoded one by one.
    """
    good = Columns()
    try:
        batch = telemetry_decoder.decode(raw)
        provider_id, batch_id = batch.provider_id, batch.batch_id
        samples: list[Sample | Reject] = list(batch.samples)
    except msgspec.ValidationError as exc:  # valid JSON, wrong shape somewhere: sample by sample
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as jexc:  # e.g. integers beyond 64 bits
            return Validated("", "", good, [Reject("unparseable", str(jexc), raw)])
        if not isinstance(doc, dict):
            return Validated("", "", good, [Reject("schema", "message is not a JSON object", raw)])
        provider_id, batch_id = doc.get("provider_id"), doc.get("batch_id")
        raw_samples = doc.get("samples")
        if not isinstance(provider_id, str) or not isinstance(batch_id, str) or not isinstance(
            raw_samples, list
        ):
            return Validated(
                provider_id if isinstance(provider_id, str) else "",
                batch_id if isinstance(batch_id, str) else "",
                good,
                [Reject("schema", f"batch envelope: {exc}", raw)],
            )
        samples = decode_samples_one_by_one(raw_samples)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # not JSON; not UTF-8 (even inside a string)
        return Validated("", "", good, [Reject("unparseable", str(exc), raw)])
    except RecursionError:  # msgspec recurses even into fields it skips: ~1000 nested arrays
        return Validated("", "", good, [Reject("unparseable", "JSON nested too deeply", raw)])
    rejects: list[Reject] = []
    if len(samples) > limits.max_samples:
        rejects.append(
            Reject("too_large", f"{len(samples)} samples > {limits.max_samples}", raw, provider_id, batch_id)
        )
        return Validated(provider_id, batch_id, good, rejects)
    # Fast path inlined (this loop runs once per sample); the detailed checks run only on failure.
    hi_ms = now_ms + limits.max_future_s * 1000
    lo_ms = now_ms - limits.retention_days * 86_400_000
    get = registry.get
    ts_out, rid_out, cpu_out, mem_out, sto_out = good.ts_ms, good.resource_id, good.cpu, good.mem, good.storage
    rx_out, tx_out = good.net_rx, good.net_tx
    for s in samples:
        if isinstance(s, Reject):
            s.provider_id, s.batch_id = provider_id, batch_id
            rejects.append(s)
            continue
        ts = s.ts
        c, m, st, rx, tx = s.cpu_pct, s.mem_pct, s.storage_pct, s.net_rx_kbps, s.net_tx_kbps
        res = get(s.resource_id)
        t = int(ts.timestamp() * 1000) if ts.tzinfo is not None else -1
        if (
            t < lo_ms
            or t > hi_ms
            or not (0.0 <= c <= 100.0 and 0.0 <= m <= 100.0 and 0.0 <= st <= 100.0)
            or (rx is not None and not (0.0 <= rx <= RATE_MAX))
            or (tx is not None and not (0.0 <= tx <= RATE_MAX))
            or res is None
            or res.provider_id != provider_id
            or res.state not in SUPERVISED_STATES
        ):
            try:
                problem = check_sample(s, now_ms, limits) or registry_check(s, provider_id, registry)
            except ValueError as exc:
                problem = ("schema", str(exc))
            if problem is None:  # pragma: no cover - the fast test and the detailed checks disagree
                problem = ("schema", "sample failed validation")
            rejects.append(Reject(problem[0], problem[1], msgspec.json.encode(s), provider_id, batch_id))
            continue
        ts_out.append(t)
        rid_out.append(s.resource_id)
        cpu_out.append(c)
        mem_out.append(m)
        sto_out.append(st)
        rx_out.append(rx)
        tx_out.append(tx)
    good.provider_id = [provider_id] * len(ts_out)
    return Validated(provider_id, batch_id, good, rejects)
