"""POST /api/v1/incidents (a provider reports an incident event → incidents.v1) and GET /api/v1/sla.

The body is an incidents.v1 event (docs/sla.md); ``provider_id`` may be omitted (it is the
token's provider) and must not name another provider. Checked here: JSON and schema (400),
time zone and a time not too far ahead (400), resources and incident of another provider
(403). The step itself (e.g. resolving an incident nobody opened) is judged by the
incidents agent in order with the Kafka stream: an invalid step is dead-lettered as
``invalid_incident``, so a 202 means "accepted for processing". Retrying the same body is
harmless: the same event id with the same content changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import sql
from dashboard.app import bearer
from dashboard.auth import require
from dashboard.http import bounded_json_object, error
from opscenter.wire import TOPIC_INCIDENTS
from opscenter.wire_incidents import IncidentEvent, encode
from opscenter.workdays import SHANGHAI
from streams import sla_figures
from streams.sla_agent import incident_key

MAX_BODY_BYTES = 64 * 1024


async def post_incident(request: Request) -> Response:
    services = request.app.state.services
    provider_id = request.state.principal.scope
    doc = await bounded_json_object(request, MAX_BODY_BYTES, "故障事件", "an incidents.v1 event")
    if isinstance(doc, Response):
        return doc
    claimed = doc.setdefault("provider_id", provider_id)
    if claimed != provider_id:
        return error(403, "foreign_provider", "无权以其他云服务商身份上报",
                     f"token of {provider_id!r} cannot report for {claimed!r}")  # fmt: skip
    try:
        ev = msgspec.convert(doc, IncidentEvent)
    except msgspec.ValidationError as exc:
        return error(400, "schema", "故障事件格式错误", f"incidents.v1 event: {exc}")
    max_future_s = services.settings.max_future_s
    if ev.ts.timestamp() > time.time() + max_future_s:
        return error(400, "future_timestamp", "事件时间超前",
                     f"ts {ev.ts.isoformat()} is more than {max_future_s} s ahead")  # fmt: skip
    if ev.type == "opened" and ev.severity is None:
        return error(400, "missing_severity", "新建故障须注明级别（P1–P4）", "'opened' needs a severity P1–P4")
    for rid in ev.resource_ids:
        res = services.registry.get(rid)
        if res is not None and res.provider_id != provider_id:
            return error(403, "foreign_resource", "所涉资源不属于本云服务商",
                         f"resource {rid!r} belongs to another provider", resource_id=rid)  # fmt: skip
    owner = await services.redis.hget(incident_key(ev.incident_id), "provider_id")
    if owner is not None and owner.decode() != provider_id:
        return error(403, "foreign_incident", "该故障属于其他云服务商",
                     f"incident {ev.incident_id!r} belongs to another provider")  # fmt: skip
    await services.send(TOPIC_INCIDENTS, ev.incident_id.encode(), encode(ev))
    return JSONResponse(
        {"event_id": ev.event_id, "incident_id": ev.incident_id, "type": ev.type, "status": "accepted",
         "message": "已受理，将按顺序处理", "message_en": "accepted; applied in order by the incidents agent"},
        status_code=202,
    )  # fmt: skip


GROUP_BY = ("day", "month", "quarter", "year")
SLA_READERS = ("bureau", "provider", "auditor")


def _day_ms(text: str) -> int:
    """A calendar day YYYY-MM-DD in Asia/Shanghai → epoch ms of its start."""
    return int(datetime.combine(date.fromisoformat(text), dtime(0), SHANGHAI).timestamp() * 1000)


async def get_sla(request: Request) -> Response:
    """GET /api/v1/sla?provider=&from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=day|month|quarter|year.

    ``rows``: MTTA, MTTR and the share within target per provider, period and severity (drills
    counted apart); ``quality``: fault rate, availability and satisfaction per provider and period
    (streams/sla_figures.py). ``to`` is exclusive; days in Asia/Shanghai. A provider sees only
    its own figures.
    """
    principal = request.state.principal
    q = request.query_params
    provider = q.get("provider", "")
    if principal.role == "provider":
        if provider and provider != principal.scope:
            return error(403, "foreign_provider", "无权查看其他云服务商的数据",
                         f"token of {principal.scope!r} cannot read {provider!r}")  # fmt: skip
        provider = principal.scope
    group_by = q.get("group_by", "month")
    if group_by not in GROUP_BY:
        return error(400, "bad_parameter", "参数错误", f"group_by must be one of {', '.join(GROUP_BY)}")
    today = datetime.now(SHANGHAI).date()
    to_day = q.get("to", (today + timedelta(days=1)).isoformat())
    from_day = q.get("from", today.replace(day=1).isoformat())
    try:
        to_ms, from_ms = _day_ms(to_day), _day_ms(from_day)
    except ValueError:
        return error(400, "bad_parameter", "参数错误", "from and to are dates YYYY-MM-DD (Asia/Shanghai)")
    if from_ms >= to_ms or to_ms - from_ms > 5 * 366 * 86_400_000:
        return error(400, "bad_range", "时间范围错误", "need from < to and at most 5 years")
    as_of_ms = int(time.time() * 1000)
    params = {"provider": provider, "from_ms": from_ms, "to_ms": to_ms, "group_by": group_by, "as_of_ms": as_of_ms}
    store = request.app.state.services.store
    rows, quality = await asyncio.gather(
        store.query_dicts(sql.report("sla_provider"), params),
        sla_figures.quality_rows(store, provider, date.fromisoformat(from_day), date.fromisoformat(to_day), group_by,
                                 as_of_ms),
    )  # fmt: skip
    for r in rows:
        r["period"] = r["period"].isoformat()
    return JSONResponse({"provider": provider or None, "group_by": group_by, "from": from_day, "to": to_day,
                         "as_of_ms": as_of_ms, "rows": rows, "quality": quality})  # fmt: skip


def routes() -> list[BaseRoute]:
    """The incident and SLA routes of the web app."""
    return [
        Route("/api/v1/incidents", bearer("provider")(post_incident), methods=["POST"]),
        Route("/api/v1/sla", require(*SLA_READERS)(get_sla), methods=["GET"]),
    ]
