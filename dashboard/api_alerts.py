"""Alert API: list and filter alerts, acknowledge, resolve, silences and assurance periods CRUD, rule reload.

Handlers take the caller as a parameter (access control is the access-control issue's: until it
lands every caller is treated as the bureau). Errors carry a Chinese ``message`` and an English
``message_en``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from alerts import engine, persist
from alerts.assurance import check as check_period
from alerts.model import SEVERITIES, Matcher
from alerts.service import AlertService, from_services
from alerts.silences import Silence
from alerts.silences import check as check_silence
from alerts.yamlfile import ConfigError
from dashboard.audit import audited
from dashboard.auth import require
from dashboard.ingest import error

CONTROL_CHANNEL = persist.CONTROL_CHANNEL
STATES = ("firing", "acknowledged", "resolved")


@dataclass(frozen=True)
class Caller:
    """Who calls: role (bureau, provider, …), a name for the records, and a scope id."""

    role: str
    name: str
    scope: str = ""


def caller_of(request: Request) -> Caller:
    """The caller; a bureau officer until the access-control issue wires real principals."""
    p = getattr(request.state, "principal", None)
    if p is not None:
        return Caller(
            getattr(p, "role", "bureau"),
            getattr(p, "name", "") or getattr(p, "scope", ""),
            getattr(p, "scope", ""),
        )
    return Caller("bureau", "bureau")


def _svc(request: Request) -> AlertService:
    return from_services(request.app.state.services)


async def _body(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        doc = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return error(400, "unparseable", "请求体不是有效的 JSON", "body is not valid JSON")
    if not isinstance(doc, dict):
        return error(400, "schema", "请求体必须是 JSON 对象", "body must be a JSON object")
    return doc


def _ms(v: Any, field: str) -> int:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return int(v)
    t = datetime.fromisoformat(str(v))
    if t.tzinfo is None:
        raise ValueError(f"{field} needs a time zone")
    return int(t.timestamp() * 1000)


# --- alerts ----------------------------------------------------------------------------
def filter_alerts(alerts: list[dict[str, Any]], q: dict[str, str]) -> list[dict[str, Any]]:
    """Alerts matching the query (state, severity, provider, unit, district, resource, rule, from_ms, to_ms)."""
    out = []
    for a in alerts:
        if q.get("state") and a["state"] not in q["state"].split(","):
            continue
        if q.get("severity") and a["severity"] not in q["severity"].split(","):
            continue
        if q.get("rule") and a["rule"] != q["rule"]:
            continue
        if any(
            q.get(k) and a["labels"].get(k) != q[k]
            for k in ("provider", "unit", "district", "resource")
        ):
            continue
        if q.get("from_ms") and a["updated_ms"] < int(q["from_ms"]):
            continue
        if q.get("to_ms") and a["started_ms"] > int(q["to_ms"]):
            continue
        out.append(a)
    return sorted(out, key=lambda a: (SEVERITIES.index(a["severity"]) if a["severity"] in SEVERITIES else 9,
                                      -a["started_ms"]))  # fmt: skip


HISTORY_SQL = """
SELECT alert_id, argMax(rule, seq) AS l_rule, argMax(to_state, seq) AS l_state, argMax(severity, seq) AS l_severity,
       argMax(labels, seq) AS l_labels, argMax(summary_zh, seq) AS l_summary_zh, argMax(summary_en, seq) AS l_summary_en,
       toUnixTimestamp64Milli(min(at)) AS l_started_ms, toUnixTimestamp64Milli(max(at)) AS l_updated_ms
FROM alert_transitions FINAL
WHERE at >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC') AND at < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')
GROUP BY alert_id ORDER BY l_started_ms DESC LIMIT {limit:UInt32}
"""


async def list_alerts(
    svc: AlertService, caller: Caller, q: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """Live alerts (open and recently resolved) or, with ``source=history``, every alert in a time range."""
    for k in ("from_ms", "to_ms", "limit"):
        if q.get(k) and not q[k].lstrip("-").isdigit():
            return 400, {
                "error": "bad_parameter",
                "message": "参数错误",
                "message_en": f"{k} must be an integer",
            }
    if q.get("state") and not set(q["state"].split(",")) <= set(STATES):
        return 400, {
            "error": "bad_parameter",
            "message": "状态参数错误",
            "message_en": f"state is one of {STATES}",
        }
    limit = min(int(q.get("limit") or 500), 5000)
    if q.get("source") == "history":
        now = int(time.time() * 1000)
        rows = await svc.store.query_dicts(HISTORY_SQL, {"from_ms": int(q.get("from_ms") or now - 7 * 86_400_000),
                                                          "to_ms": int(q.get("to_ms") or now + 1), "limit": 100_000})  # fmt: skip
        docs = [{"alert_id": r["alert_id"], "rule": r["l_rule"], "state": r["l_state"], "severity": r["l_severity"],
                 "labels": dict(r["l_labels"]), "summary_zh": r["l_summary_zh"], "summary_en": r["l_summary_en"],
                 "started_ms": int(r["l_started_ms"]), "updated_ms": int(r["l_updated_ms"])} for r in rows]  # fmt: skip
        q = {k: v for k, v in q.items() if k not in ("from_ms", "to_ms")}
    else:
        state = await svc.snapshot()
        docs = [a.public() for a in state.alerts.values()]
    found = filter_alerts(docs, q)
    return 200, {"alerts": found[:limit], "total": len(found)}


async def get_alert(svc: AlertService, caller: Caller, ident: str) -> tuple[int, dict[str, Any]]:
    """One live alert with its recorded transitions."""
    state = await svc.snapshot()
    from alerts.state import by_alert_id

    a = by_alert_id(state.alerts, ident)
    rows = await svc.store.query_dicts(
        "SELECT seq, from_state, to_state, toUnixTimestamp64Milli(at) AS at_ms, actor, reason FROM alert_transitions "
        "FINAL WHERE alert_id = {id:String} OR fingerprint = {id:String} ORDER BY at_ms, seq", {"id": ident})  # fmt: skip
    if a is None and not rows:
        return 404, {
            "error": "not_found",
            "message": "告警不存在",
            "message_en": f"no alert {ident!r}",
        }
    return 200, {"alert": a.public() if a else None, "transitions": rows}


async def acknowledge(
    svc: AlertService, caller: Caller, ident: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Acknowledge a firing alert: escalation stops, the alert stays open and visible."""
    state = await svc.snapshot()
    from alerts.state import by_alert_id

    a = by_alert_id(state.alerts, ident)
    if a is None:
        return 404, {
            "error": "not_found",
            "message": "告警不存在",
            "message_en": f"no open alert {ident!r}",
        }
    if a.state != "firing":
        return 409, {"error": "not_firing", "message": f"告警当前状态为{a.state}，无法确认",
                     "message_en": f"alert is {a.state}, only a firing alert can be acknowledged"}  # fmt: skip
    await svc.acknowledge(a.fingerprint, caller.name, str(body.get("comment", ""))[:500])
    return 200, {"alert": (await svc.snapshot()).alerts[a.fingerprint].public()}


async def resolve(
    svc: AlertService, caller: Caller, ident: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Resolve an open alert by hand; a reason is required."""
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return 400, {
            "error": "reason_required",
            "message": "手动解除告警必须填写原因",
            "message_en": "a reason is required",
        }
    state = await svc.snapshot()
    from alerts.state import by_alert_id

    a = by_alert_id(state.alerts, ident)
    if a is None or not a.open:
        return 404, {
            "error": "not_found",
            "message": "没有该未解除的告警",
            "message_en": f"no open alert {ident!r}",
        }
    await svc.resolve(a.fingerprint, caller.name, reason.strip()[:500])
    return 200, {"alert": (await svc.snapshot()).alerts[a.fingerprint].public()}


# --- silences --------------------------------------------------------------------------
def _silence_from(body: dict[str, Any], caller: Caller, now_ms: int, sid: str, created_ms: int
                  ) -> tuple[Silence | None, list[dict[str, str]]]:  # fmt: skip
    problems: list[dict[str, str]] = []
    matchers: list[Matcher] = []
    raw = body.get("matchers")
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        problems.append(
            {
                "field": "matchers",
                "message": "匹配条件必须是字符串列表",
                "message_en": "matchers: list of name=value",
            }
        )
        raw = []
    for m in raw:
        try:
            matchers.append(Matcher.parse(m))
        except ValueError as exc:
            problems.append(
                {"field": "matchers", "message": "匹配条件格式错误", "message_en": str(exc)}
            )
    try:
        starts = _ms(body.get("starts_at", now_ms), "starts_at")
        ends = _ms(body["ends_at"], "ends_at")
    except (KeyError, ValueError, TypeError):
        problems.append({"field": "ends_at", "message": "时间格式错误（需含时区）",
                         "message_en": "starts_at/ends_at: epoch ms or ISO 8601 with a time zone; ends_at required"})  # fmt: skip
        return None, problems
    comment = str(body.get("comment", ""))
    for field, zh, en in check_silence(tuple(matchers), starts, ends, comment):
        problems.append({"field": field, "message": zh, "message_en": en})
    if problems:
        return None, problems
    return Silence(
        sid, tuple(matchers), starts, ends, caller.name, comment[:500], created_ms, now_ms
    ), []


async def list_silences(svc: AlertService, caller: Caller) -> tuple[int, dict[str, Any]]:
    """Every silence with its state (pending, active, expired)."""
    now = int(time.time() * 1000)
    state = await svc.snapshot()
    return 200, {"silences": sorted((engine.silence_public(s, now) for s in state.silences.values()),
                                    key=lambda s: -s["starts_ms"])}  # fmt: skip


async def put_silence(svc: AlertService, caller: Caller, body: dict[str, Any], sid: str | None = None
                      ) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """Create (no id) or replace a silence; records who and why."""
    now = int(time.time() * 1000)
    created = now
    if sid is not None:
        cur = (await svc.snapshot()).silences.get(sid)
        if cur is None:
            return 404, {
                "error": "not_found",
                "message": "静默规则不存在",
                "message_en": f"no silence {sid!r}",
            }
        created = cur.created_ms
    silence, problems = _silence_from(body, caller, now, sid or uuid.uuid4().hex[:12], created)
    if silence is None:
        return 422, {
            "error": "invalid",
            "message": "静默规则无效",
            "message_en": "invalid silence",
            "problems": problems,
        }
    await svc.put_silence(silence, caller.name)
    return (200 if sid else 201), {"silence": engine.silence_public(silence, now)}


async def expire_silence(svc: AlertService, caller: Caller, sid: str) -> tuple[int, dict[str, Any]]:
    """End a silence now (it stays listed as expired)."""
    s = await svc.expire_silence(sid, caller.name)
    if s is None:
        return 404, {
            "error": "not_found",
            "message": "静默规则不存在",
            "message_en": f"no silence {sid!r}",
        }
    return 200, {"silence": engine.silence_public(s, int(time.time() * 1000))}


# --- assurance periods -------------------------------------------------------------------
async def list_periods(svc: AlertService, caller: Caller) -> tuple[int, dict[str, Any]]:
    """The assurance calendar and the period in force."""
    now = int(time.time() * 1000)
    state = await svc.snapshot()
    active = engine.period_now(state, now)
    return 200, {"periods": sorted((engine.period_public(p, now) for p in state.periods.values()),
                                   key=lambda p: p["starts_ms"]),
                 "active": engine.period_public(active, now) if active else None}  # fmt: skip


async def put_period(svc: AlertService, caller: Caller, body: dict[str, Any], pid: str | None = None
                     ) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """Create or replace an assurance period."""
    doc = {**body, "id": pid or body.get("id") or uuid.uuid4().hex[:12], "created_by": caller.name}
    period, problems = check_period(doc)
    if period is None:
        return 422, {"error": "invalid", "message": "重保时段无效", "message_en": "invalid assurance period",
                     "problems": [{"field": f, "message": zh, "message_en": en} for f, zh, en in problems]}  # fmt: skip
    exists = period.id in (await svc.snapshot()).periods
    if pid is not None and not exists:
        return 404, {
            "error": "not_found",
            "message": "重保时段不存在",
            "message_en": f"no period {pid!r}",
        }
    await svc.put_period(period, caller.name)
    return (200 if exists else 201), {
        "period": engine.period_public(period, int(time.time() * 1000))
    }


async def delete_period(svc: AlertService, caller: Caller, pid: str) -> tuple[int, dict[str, Any]]:
    """Delete an assurance period."""
    p = await svc.delete_period(pid, caller.name)
    if p is None:
        return 404, {
            "error": "not_found",
            "message": "重保时段不存在",
            "message_en": f"no period {pid!r}",
        }
    return 200, {"deleted": pid}


# --- rules -------------------------------------------------------------------------------
async def reload_rules(svc: AlertService, caller: Caller) -> tuple[int, dict[str, Any]]:
    """Re-read the configured rule file; an invalid file is refused and the running rules stay."""
    try:
        config = svc.reload()
    except ConfigError as exc:
        return 422, {"error": "invalid_rules", "message": "规则文件有误，仍使用原规则",
                     "message_en": "rule file invalid; the running rules are kept", "problems": exc.as_json()}  # fmt: skip
    await svc.redis.publish(CONTROL_CHANNEL, orjson.dumps({"reload": True, "by": caller.name}))
    return 200, {"rules": [r.name for r in config.rules], "path": config.path}


# --- Starlette edges -----------------------------------------------------------------------
def _respond(result: tuple[int, dict[str, Any]]) -> Response:
    status, doc = result
    return JSONResponse(doc, status_code=status)


async def h_list(request: Request) -> Response:
    return _respond(
        await list_alerts(_svc(request), caller_of(request), dict(request.query_params))
    )


async def h_get(request: Request) -> Response:
    return _respond(
        await get_alert(_svc(request), caller_of(request), request.path_params["ident"])
    )


async def h_ack(request: Request) -> Response:
    body = await _body(request)
    if isinstance(body, Response):
        return body
    return _respond(
        await acknowledge(_svc(request), caller_of(request), request.path_params["ident"], body)
    )


async def h_resolve(request: Request) -> Response:
    body = await _body(request)
    if isinstance(body, Response):
        return body
    return _respond(
        await resolve(_svc(request), caller_of(request), request.path_params["ident"], body)
    )


async def h_silences(request: Request) -> Response:
    if request.method == "GET":
        return _respond(await list_silences(_svc(request), caller_of(request)))
    body = await _body(request)
    if isinstance(body, Response):
        return body
    return _respond(await put_silence(_svc(request), caller_of(request), body))


async def h_silence(request: Request) -> Response:
    sid = request.path_params["sid"]
    if request.method == "DELETE":
        return _respond(await expire_silence(_svc(request), caller_of(request), sid))
    body = await _body(request)
    if isinstance(body, Response):
        return body
    return _respond(await put_silence(_svc(request), caller_of(request), body, sid))


async def h_periods(request: Request) -> Response:
    if request.method == "GET":
        return _respond(await list_periods(_svc(request), caller_of(request)))
    body = await _body(request)
    if isinstance(body, Response):
        return body
    return _respond(await put_period(_svc(request), caller_of(request), body))


async def h_period(request: Request) -> Response:
    pid = request.path_params["pid"]
    if request.method == "DELETE":
        return _respond(await delete_period(_svc(request), caller_of(request), pid))
    body = await _body(request)
    if isinstance(body, Response):
        return body
    return _respond(await put_period(_svc(request), caller_of(request), body, pid))


async def h_reload(request: Request) -> Response:
    return _respond(await reload_rules(_svc(request), caller_of(request)))


READ = ("bureau", "auditor", "provider", "unit", "district")


async def h_list_scoped(request: Request) -> Response:
    """Alerts inside the caller's scope only (a provider sees its own, a district its own, …)."""
    resp = await h_list(request)
    p = request.state.principal
    if p.scope_field is None or resp.status_code != 200:
        return resp
    doc = orjson.loads(resp.body)
    doc["alerts"] = [a for a in doc["alerts"] if _in_scope(p, a)]
    doc["total"] = len(doc["alerts"])
    return JSONResponse(doc)


async def h_get_scoped(request: Request) -> Response:
    resp = await h_get(request)
    p = request.state.principal
    if p.scope_field is None or resp.status_code != 200:
        return resp
    doc = orjson.loads(resp.body)
    if not _in_scope(p, doc.get("alert") or {}):  # history-only (no live alert): not shown to scoped callers
        return _respond((404, {"error": "not_found", "message": "告警不存在", "message_en": "no such alert"}))
    return resp


def _in_scope(p: Any, alert: dict[str, Any]) -> bool:
    labels = alert.get("labels") or {}
    return bool(p.sees(labels.get("provider", ""), labels.get("unit", ""), labels.get("district", "")))


def routes() -> list[BaseRoute]:
    bureau = require("bureau")
    read = require(*READ)
    audit_read = require("bureau", "auditor")
    return [
        Route("/api/v1/alerts", read(h_list_scoped), methods=["GET"]),
        Route("/api/v1/alerts/rules/reload", bureau(audited("rules_reload")(h_reload)), methods=["POST"]),
        Route("/api/v1/alerts/{ident}", read(h_get_scoped), methods=["GET"]),
        Route("/api/v1/alerts/{ident}/acknowledge", bureau(audited("alert_ack", "ident")(h_ack)), methods=["POST"]),
        Route("/api/v1/alerts/{ident}/resolve", bureau(audited("alert_resolve", "ident")(h_resolve)), methods=["POST"]),
        Route("/api/v1/silences", audit_read(h_silences), methods=["GET"]),
        Route("/api/v1/silences", bureau(audited("silence_create")(h_silences)), methods=["POST"]),
        Route("/api/v1/silences/{sid}", bureau(audited("silence_change", "sid")(h_silence)), methods=["PUT", "DELETE"]),
        Route("/api/v1/assurance-periods", audit_read(h_periods), methods=["GET"]),
        Route("/api/v1/assurance-periods", bureau(audited("assurance_create")(h_periods)), methods=["POST"]),
        Route("/api/v1/assurance-periods/{pid}", bureau(audited("assurance_change", "pid")(h_period)),
              methods=["PUT", "DELETE"]),
    ]  # fmt: skip
