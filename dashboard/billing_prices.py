"""The billing standard and the bureau's judgements (§6, §34): ``/api/v1/prices``, ``/api/v1/judgements``.

The Finance Bureau appends price-list versions (never edits); the bureau judges services
unqualified (their days are excluded from billing) and may withdraw a judgement. Every change is
written to the audit log; the rules are :mod:`opscenter.fees` and docs/billing.md.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict
from datetime import date, datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dashboard.auth import require
from dashboard.billing_common import audit, jsonable, provider_param, store_of, today_cst
from dashboard.http import bad
from dashboard.http import json_object as body_of
from opscenter import fees
from opscenter.store import AsyncStore

PRICE_COLUMNS = ("version_id", "resource_class", "valid_from", "valid_to", "vcpu_day", "mem_gb_day", "storage_gb_day",
                 "correction", "reason", "created_by", "created_at")  # fmt: skip
JUDGEMENT_COLUMNS = ("judgement_id", "action", "provider_id", "resource_id", "from_day", "to_day", "reason", "actor", "ts")
_price_lock = asyncio.Lock()  # one writer at a time per process: validation then append


def not_json() -> JSONResponse:
    return bad("unparseable", "请求体不是 JSON 对象", "body is not a JSON object")


async def price_versions(store: AsyncStore) -> list[fees.PriceVersion]:
    """Every version ever appended, oldest first."""
    rows = await store.query_dicts(f"SELECT {', '.join(PRICE_COLUMNS)} FROM price_versions ORDER BY created_at, version_id")
    return [fees.PriceVersion(**{**r, "correction": bool(r["correction"])}) for r in rows]


@require("bureau", "finance", "auditor", "provider")
async def list_prices(request: Request) -> Response:
    versions = await price_versions(store_of(request))
    return JSONResponse({"versions": [jsonable(asdict(v)) for v in versions]})


@require("finance")
async def create_price(request: Request) -> Response:
    """Append a price-list version (finance only); validated against the existing ones, audited."""
    doc = await body_of(request)
    if doc is None:
        return not_json()
    p = request.state.principal
    now = datetime.now(timezone.utc)
    async with _price_lock:
        try:
            version = fees.parse_price(doc, f"pv-{uuid.uuid4().hex[:12]}", p.name, now)
            fees.check_new_version(version, await price_versions(store_of(request)), today_cst(now))
        except fees.PriceError as exc:
            await audit(request, "price_create", str(doc.get("valid_from", "")), f"refused: {exc.en}"[:1000], False)
            return JSONResponse({"error": "invalid_price", "field": exc.field, "message": exc.zh, "message_en": exc.en},
                                status_code=422)  # fmt: skip
        row = [getattr(version, c) for c in PRICE_COLUMNS]
        row[PRICE_COLUMNS.index("correction")] = int(version.correction)
        await store_of(request).insert_retrying("price_versions", [[v] for v in row], PRICE_COLUMNS)
    detail = (f"class={version.resource_class} from={version.valid_from} to={version.valid_to or 'open'} "
              f"vcpu_day={version.vcpu_day} mem_gb_day={version.mem_gb_day} storage_gb_day={version.storage_gb_day} "
              f"correction={int(version.correction)} reason={version.reason}")  # fmt: skip
    await audit(request, "price_create", version.version_id, detail)
    return JSONResponse(jsonable(asdict(version)), status_code=201)


@require("bureau", "finance", "auditor", "provider")
async def list_judgements(request: Request) -> Response:
    provider = provider_param(request, request.query_params.get("provider", ""))
    if isinstance(provider, JSONResponse):
        return provider
    rows = await store_of(request).query_dicts(
        "SELECT judgement_id, argMinIf(resource_id, ts, action = 'judge') AS resource_id, "
        "argMinIf(from_day, ts, action = 'judge') AS from_day, argMinIf(to_day, ts, action = 'judge') AS to_day, "
        "argMinIf(reason, ts, action = 'judge') AS reason, argMinIf(actor, ts, action = 'judge') AS judged_by, "
        "minIf(ts, action = 'judge') AS judged_at, countIf(action = 'withdraw') > 0 AS withdrawn "
        "FROM service_judgements WHERE provider_id = {p:String} GROUP BY judgement_id ORDER BY judged_at",
        {"p": provider},
    )
    return JSONResponse({"provider_id": provider, "judgements": jsonable(rows)})


@require("bureau")
async def create_judgement(request: Request) -> Response:
    """The bureau judges a provider's service (one resource, or all: resource_id '') unqualified for days."""
    doc = await body_of(request)
    if doc is None:
        return not_json()
    provider, resource = str(doc.get("provider_id") or ""), str(doc.get("resource_id") or "")
    reason = str(doc.get("reason") or "").strip()
    try:
        first, last = fees.parse_day(doc.get("from"), "from"), fees.parse_day(doc.get("to"), "to")
    except fees.PriceError as exc:
        return bad("schema", exc.zh, exc.en)
    if not provider or not reason or last < first or len(reason) > 500:
        return bad("schema", "需要 provider_id、原因（500 字以内）及有效的起止日期",
                   "provider_id, a reason (≤ 500 characters) and from ≤ to are required")  # fmt: skip
    if resource and not await store_of(request).query(
        "SELECT 1 FROM inventory WHERE resource_id = {r:String} AND provider_id = {p:String} LIMIT 1",
        {"r": resource, "p": provider},
    ):
        return bad("not_found", "该云服务商名下无此资源", f"provider {provider} has no resource {resource}", 422)
    jid = f"jd-{uuid.uuid4().hex[:12]}"
    p = request.state.principal
    row = [jid, "judge", provider, resource, first, last, reason, p.name, datetime.now(timezone.utc)]
    await store_of(request).insert_retrying("service_judgements", [[v] for v in row], JUDGEMENT_COLUMNS)
    await audit(request, "judgement_create", jid, f"provider={provider} resource={resource or '*'} {first}..{last} {reason}")
    return JSONResponse({"judgement_id": jid, "provider_id": provider, "resource_id": resource, "from": str(first),
                         "to": str(last), "reason": reason}, status_code=201)  # fmt: skip


@require("bureau")
async def withdraw_judgement(request: Request) -> Response:
    jid = request.path_params["judgement_id"]
    rows = await store_of(request).query(
        "SELECT provider_id, countIf(action = 'withdraw') FROM service_judgements WHERE judgement_id = {j:String} "
        "GROUP BY provider_id", {"j": jid},
    )  # fmt: skip
    if not rows or rows[0][1]:
        await audit(request, "judgement_withdraw", jid, "not found or already withdrawn", False)
        return bad("not_found", "认定不存在或已撤销", "no such judgement, or already withdrawn", 404)
    doc = await body_of(request) or {}
    p = request.state.principal
    row = [jid, "withdraw", rows[0][0], "", date(1970, 1, 1), date(1970, 1, 1), str(doc.get("reason") or "")[:500],
           p.name, datetime.now(timezone.utc)]  # fmt: skip
    await store_of(request).insert_retrying("service_judgements", [[v] for v in row], JUDGEMENT_COLUMNS)
    await audit(request, "judgement_withdraw", jid, row[6])
    return JSONResponse({"judgement_id": jid, "withdrawn": True})
