"""POST /api/v1/telemetry: a provider's batch over HTTP → telemetry.v1, checked first.

Rejection policy (documented in docs/wire-formats.md): a request that is not JSON, or whose envelope
is wrong, gets 400 with the reason. Samples are judged one by one: a sample for another
provider's resource, an unregistered resource, a value out of range or a bad timestamp is
listed in the response with its index and reason, and the other samples are accepted
(202). If no sample is accepted and at least one belonged to another provider, the answer
is 403. Accepted samples are regrouped by shard key and produced to telemetry.v1.

Each provider has a token bucket of samples (``dashboard/ratelimit.py``): over its rate it gets
429 with ``Retry-After``. The bucket is tested before the body is read, and charged with the
batch's samples once the envelope is valid.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from dashboard.ratelimit import Decision, RateLimiter
from dashboard.http import error
from opscenter import metrics
from opscenter.wire import TOPIC_TELEMETRY, Sample, TelemetryBatch, json_encoder, shard_key
from streams.validation import Limits, Reject, check_sample, decode_samples_one_by_one, registry_check


#: most samples in one produced message (keeps messages far below the broker's size limit)
SUB_BATCH_SAMPLES = 1000


class _Envelope(msgspec.Struct):
    batch_id: str
    samples: list[Any]
    provider_id: str | None = None
    v: int = 1


_envelope = msgspec.json.Decoder(_Envelope)


def limiter(app: Starlette, settings: Any) -> RateLimiter:
    """The process's per-provider ingest buckets (made on first use)."""
    lim = getattr(app.state, "ingest_limiter", None)
    if lim is None:
        lim = app.state.ingest_limiter = RateLimiter(settings.ingest_rate_samples_s, settings.ingest_burst_samples)
    return lim


def rate_limited(provider_id: str, decision: Decision, rate_per_s: float) -> JSONResponse:
    metrics.http_ingest.labels(provider_id, "429").inc()
    n = decision.retry_after_s
    resp = error(429, "rate_limited", f"上报过于频繁，已超过每秒 {rate_per_s:g} 个样本的限额，请 {n} 秒后重试",
                 f"over the ingest rate of {rate_per_s:g} samples/s; retry after {n} s", retry_after_s=n)  # fmt: skip
    resp.headers["Retry-After"] = str(n)
    return resp


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None if it is larger than ``limit`` (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def post_telemetry(request: Request) -> JSONResponse:
    services = request.app.state.services
    settings = services.settings
    principal = request.state.principal
    provider_id = principal.scope
    buckets = limiter(request.app, settings)
    decision = buckets.check(provider_id, time.monotonic())
    if not decision.allowed:  # in debt: refuse before reading the body
        return rate_limited(provider_id, decision, settings.ingest_rate_samples_s)
    body = await read_body(request, settings.ingest_max_body_bytes)
    if body is None:
        metrics.http_ingest.labels(provider_id, "413").inc()
        return error(413, "too_large", "请求体过大", f"body larger than {settings.ingest_max_body_bytes} bytes")
    try:
        env = _envelope.decode(body)
    except msgspec.ValidationError as exc:  # (a subclass of DecodeError: first)
        metrics.http_ingest.labels(provider_id, "400").inc()
        return error(400, "schema", "批次格式错误", f"batch envelope: {exc}")
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        metrics.http_ingest.labels(provider_id, "400").inc()
        return error(400, "unparseable", "请求体不是有效的 JSON", f"body is not valid JSON: {exc}")
    except RecursionError:  # msgspec decodes ``list[Any]`` recursively: ~1000 nested arrays
        metrics.http_ingest.labels(provider_id, "400").inc()
        return error(400, "unparseable", "请求体嵌套过深", "body is nested too deeply")
    if env.provider_id is not None and env.provider_id != provider_id:
        metrics.http_ingest.labels(provider_id, "403").inc()
        return error(403, "foreign_provider", "无权以其他云服务商身份上报",
                     f"token of {provider_id!r} cannot send for {env.provider_id!r}")  # fmt: skip
    limits = Limits(settings.max_future_s, settings.raw_retention_days, settings.ingest_max_samples)
    if len(env.samples) > limits.max_samples:
        metrics.http_ingest.labels(provider_id, "413").inc()
        return error(413, "too_large", "单批样本过多", f"{len(env.samples)} samples > {limits.max_samples}")
    decision = buckets.take(provider_id, len(env.samples), time.monotonic())
    if not decision.allowed:
        return rate_limited(provider_id, decision, settings.ingest_rate_samples_s)

    decoded = decode_samples_one_by_one(env.samples)
    rejected, by_key = _judge(decoded, provider_id, services.registry, limits)
    if any(r["reason"] == "unregistered_resource" for r in rejected):
        # the resource's "delivered" event may not be applied yet: catch up and judge again (also
        # when the reader applied nothing: the registry agent may have applied it meanwhile)
        await services.lifecycle_reader.catch_up()
        rejected, by_key = _judge(decoded, provider_id, services.registry, limits)

    accepted = sum(len(v) for v in by_key.values())
    for key, samples in by_key.items():
        shard = key.decode().rsplit("/", 1)[1]
        for part, i in enumerate(range(0, len(samples), SUB_BATCH_SAMPLES)):
            # sub-batch ids are stable, so a client's retry of the whole body is a duplicate
            sub = TelemetryBatch(provider_id, f"{env.batch_id}#{shard}.{part}", samples[i : i + SUB_BATCH_SAMPLES])
            await services.send(TOPIC_TELEMETRY, key, json_encoder.encode(sub))
    for r in rejected:
        metrics.http_rejected.labels(provider_id, r["reason"]).inc()
    if not accepted and any(r["reason"] == "foreign_resource" for r in rejected):
        metrics.http_ingest.labels(provider_id, "403").inc()
        return JSONResponse(
            {"error": "foreign_resource", "message": "样本所属资源不属于本云服务商",
             "message_en": "samples belong to another provider's resources", "accepted": 0,
             "rejected": rejected},
            status_code=403,
        )  # fmt: skip
    metrics.http_ingest.labels(provider_id, "202").inc()
    return JSONResponse(
        {"batch_id": env.batch_id, "accepted": accepted, "rejected": rejected}, status_code=202
    )


def _judge(
    decoded: list[Sample | Reject], provider_id: str, registry: Any, limits: Limits
) -> tuple[list[dict[str, Any]], dict[bytes, list[Sample]]]:
    """Per-sample verdicts: the rejected (index, reason) and the accepted samples by shard key."""
    now_ms = int(time.time() * 1000)
    rejected: list[dict[str, Any]] = []
    by_key: dict[bytes, list[Sample]] = defaultdict(list)
    for i, item in enumerate(decoded):
        if isinstance(item, Reject):
            problem: tuple[str, str] | None = (item.reason, item.detail)
        else:
            try:
                problem = check_sample(item, now_ms, limits) or registry_check(
                    item, provider_id, registry
                )
            except ValueError as exc:
                problem = ("schema", str(exc))
        if problem is not None:
            rid = item.resource_id if isinstance(item, Sample) else None
            rejected.append({"index": i, "resource_id": rid, "reason": problem[0], "detail": problem[1]})
            continue
        by_key[shard_key(provider_id, item.resource_id)].append(item)
    return rejected, by_key
