"""POST /api/v1/ratings: a using unit rates a provider's service (满意度评价, §33), audited.

Body: ``{"provider_id", "incident_id" | "month": "YYYY-MM", "score": 1–5, "comment"?}``. One
rating per unit and incident, or per unit, provider and month: a second one replaces the first
(ClickHouse ``ratings``, ReplacingMergeTree, the latest wins). Checked here, each with a clear
error: the body (400), a month not in the future (400), the incident exists (404), affects one
of the unit's resources (403) and belongs to the named provider (403); a month rating needs a
resource of the provider used by the unit (403). Ratings of drills are kept but excluded from
every figure (docs/sla.md).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dashboard.audit import audited
from dashboard.auth import require
from dashboard.http import bounded_json_object, error
from streams.sla_figures import local_day

MAX_BODY_BYTES = 8 * 1024
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
COLUMNS = ("unit_id", "provider_id", "subject", "incident_id", "month", "day", "drill", "score", "comment",
           "rated_by", "ts", "version")  # fmt: skip
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class RatingBody(msgspec.Struct, forbid_unknown_fields=True):
    """The body of POST /api/v1/ratings."""

    provider_id: Id
    score: Annotated[int, msgspec.Meta(ge=1, le=5)]
    incident_id: Id | None = None
    month: str | None = None
    comment: Annotated[str, msgspec.Meta(max_length=500)] = ""


async def _affects_unit(services: Any, unit: str, resource_ids: list[str]) -> bool:
    """Whether one of the resources is the unit's (the registry is caught up once if it says no)."""
    def check() -> bool:
        return any((r := services.registry.get(rid)) is not None and r.unit_id == unit for rid in resource_ids)

    if check():
        return True
    reader = getattr(services, "lifecycle_reader", None)
    return reader is not None and await reader.catch_up() and check()


async def _uses_provider(services: Any, unit: str, provider: str) -> bool:
    def check() -> bool:
        return any(r.unit_id == unit and r.provider_id == provider for r in services.registry.all())

    if check():
        return True
    reader = getattr(services, "lifecycle_reader", None)
    return reader is not None and await reader.catch_up() and check()


async def post_rating(request: Request) -> Response:
    """POST /api/v1/ratings (role ``unit``; the unit is the caller's scope) → 201 with the rating."""
    services = request.app.state.services
    principal = request.state.principal
    unit = principal.scope
    doc = await bounded_json_object(request, MAX_BODY_BYTES, "评价", "a rating")
    if isinstance(doc, Response):
        return doc
    try:
        r = msgspec.convert(doc, RatingBody)
    except msgspec.ValidationError as exc:
        return error(400, "schema", "评价格式错误（评分须为 1–5 的整数，备注不超过 500 字）",
                     f"rating: {exc} (score is an integer 1–5, comment at most 500 characters)")  # fmt: skip
    if (r.incident_id is None) == (r.month is None):
        return error(400, "bad_subject", "须填写 incident_id（评价某次故障）或 month（评价某月服务）其中之一",
                     "give exactly one of incident_id (rate an incident) or month (rate a month, YYYY-MM)")  # fmt: skip
    now_ms = int(time.time() * 1000)
    drill = False
    if r.month is not None:
        m = MONTH.match(r.month)
        if m is None or int(m[1]) < 2000:
            return error(400, "bad_month", "月份格式应为 YYYY-MM", f"month {r.month!r} is not YYYY-MM")
        day = date(int(m[1]), int(m[2]), 1)
        if day > local_day(now_ms).replace(day=1):
            return error(400, "future_month", "不能评价尚未到来的月份", f"month {r.month} is in the future")
        if not await _uses_provider(services, unit, r.provider_id):
            return error(403, "not_a_customer", "本单位未使用该云服务商的资源，不能评价",
                         f"unit {unit!r} has no resource of provider {r.provider_id!r}")  # fmt: skip
        subject = f"month:{r.month}"
    else:
        rows = await services.store.query(
            "SELECT provider_id, resource_ids, drill, toUnixTimestamp64Milli(opened) FROM incidents FINAL "
            "WHERE incident_id = {id:String}",
            {"id": r.incident_id},
        )
        if not rows:
            return error(404, "unknown_incident", "未找到该故障", f"no incident {r.incident_id!r}")
        owner, resource_ids, drill_flag, opened_ms = rows[0]
        if not await _affects_unit(services, unit, list(resource_ids)):
            return error(403, "not_affected", "该故障未涉及本单位的资源，不能评价",
                         f"incident {r.incident_id!r} affects none of the resources of unit {unit!r}")  # fmt: skip
        if owner != r.provider_id:
            return error(403, "foreign_incident", "该故障不属于所填的云服务商",
                         f"incident {r.incident_id!r} is not an incident of provider {r.provider_id!r}")  # fmt: skip
        drill = bool(drill_flag)
        day = local_day(int(opened_ms))
        subject = f"incident:{r.incident_id}"
    key = {"u": unit, "p": r.provider_id, "s": subject}
    before = await services.store.query(
        "SELECT count() FROM ratings WHERE unit_id = {u:String} AND provider_id = {p:String} AND subject = {s:String}",
        key,
    )
    row = [unit, r.provider_id, subject, r.incident_id or "", r.month or "", day, int(drill), r.score, r.comment,
           principal.name, now_ms, time.time_ns()]  # fmt: skip
    await services.store.insert_retrying("ratings", [[v] for v in row], COLUMNS)
    request.scope.setdefault("path_params", {})["subject"] = f"{r.provider_id}/{subject}"  # the audit's target
    replaced = bool(before and before[0][0])
    return JSONResponse(
        {"unit_id": unit, "provider_id": r.provider_id, "subject": subject, "incident_id": r.incident_id,
         "month": r.month, "score": r.score, "comment": r.comment, "drill": drill, "counted_on": day.isoformat(),
         "replaced": replaced, "rated_at": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(),
         "message": "已更新评价（以最新一次为准）" if replaced else "评价已记录",
         "message_en": "rating replaced (the latest counts)" if replaced else "rating recorded"},
        status_code=201,
    )  # fmt: skip


def routes() -> list[BaseRoute]:
    """The rating route of the web app."""
    return [Route("/api/v1/ratings", require("unit")(audited("rating", "subject")(post_rating)), methods=["POST"])]
