"""The alert API over the real Valkey and chDB: list/filter, acknowledge, resolve, silences, periods, reload."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from alerts.config import parse_config
from alerts.model import Observation
from alerts.service import from_services
from dashboard.api_alerts import Caller, acknowledge
from tests.integration.helpers import client_as
from opscenter.services import create_topics, open_services
from opscenter.settings import Settings

RULES = """
defaults: {group_wait_s: 0}
receivers: {oncall: {}}
escalation: {P2: [{after_s: 0, receivers: [oncall]}], P3: [{after_s: 0, receivers: [oncall]}]}
rules:
  - name: band_high
    type: event
    kind: band_change
    where: {data.band: high}
    resolve_on: {kind: band_change, where: {data.band: normal}}
    labels: [provider, unit, resource]
    severity: {from_event: true, default: P3}
    summary: {zh: "资源 {resource} 偏高", en: "{resource} high"}
"""


def obs(resource: str, provider: str, severity: str = "", band: str = "high") -> Observation:
    labels = {"provider": provider, "unit": "u-1", "resource": resource, "severity": severity}
    return Observation("band_change", int(time.time() * 1000), {k: v for k, v in labels.items() if v},
                       {"band": band}, event_id=f"{resource}-{band}-{time.time_ns()}")  # fmt: skip


@pytest.fixture
async def api(settings: Settings, tmp_path: Path) -> Any:
    await create_topics(settings)
    services = await open_services(settings)
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    config = parse_config(RULES, str(path))
    svc = from_services(services, config)
    await svc.start()
    async with client_as(services, "bureau") as client:
        yield client, svc, services, path
    await svc.drain()
    await svc.aclose()
    await services.aclose()


async def test_list_filter_acknowledge_and_resolve(api: Any) -> None:
    client, svc, _services, _ = api
    await svc.observe([obs("r1", "p1", "P2"), obs("r2", "p1"), obs("r3", "p2")])
    r = await client.get("/api/v1/alerts")
    assert r.status_code == 200 and r.json()["total"] == 3
    assert r.json()["alerts"][0]["severity"] == "P2"  # most severe first
    r = await client.get("/api/v1/alerts", params={"provider": "p1", "severity": "P3"})
    assert [a["labels"]["resource"] for a in r.json()["alerts"]] == ["r2"]
    ident = r.json()["alerts"][0]["alert_id"]
    assert (await client.get("/api/v1/alerts", params={"state": "bogus"})).status_code == 400

    r = await client.post(f"/api/v1/alerts/{ident}/acknowledge", json={"comment": "在处理"})
    assert r.status_code == 200 and r.json()["alert"]["state"] == "acknowledged"
    assert (await client.post(f"/api/v1/alerts/{ident}/acknowledge", json={})).status_code == 409
    r = await client.get("/api/v1/alerts", params={"state": "acknowledged"})
    assert [a["alert_id"] for a in r.json()["alerts"]] == [ident]  # acknowledged, still listed

    r = await client.post(f"/api/v1/alerts/{ident}/resolve", json={})
    assert r.status_code == 400 and r.json()["message"] and r.json()["message_en"]
    r = await client.post(f"/api/v1/alerts/{ident}/resolve", json={"reason": "扩容完成"})
    assert r.status_code == 200
    a = r.json()["alert"]
    assert (a["state"], a["resolve_reason"], a["ack_by"]) == ("resolved", "扩容完成", "")
    assert (await client.post("/api/v1/alerts/nope/acknowledge", json={})).status_code == 404

    await svc.drain()
    r = await client.get(f"/api/v1/alerts/{ident}")
    assert [t["to_state"] for t in r.json()["transitions"]] == [
        "firing",
        "acknowledged",
        "resolved",
    ]
    assert r.json()["transitions"][2]["reason"] == "扩容完成"
    r = await client.get("/api/v1/alerts", params={"source": "history", "state": "resolved"})
    assert [a["alert_id"] for a in r.json()["alerts"]] == [ident]


async def test_handler_takes_the_caller_as_a_parameter(api: Any) -> None:
    _, svc, _, _ = api
    await svc.observe([obs("r1", "p1")])
    ident = next(iter((await svc.snapshot()).alerts))
    status, doc = await acknowledge(svc, Caller("bureau", "wang.duty"), ident, {"comment": "ok"})
    assert status == 200 and doc["alert"]["ack_by"] == "wang.duty"


async def test_silence_crud_mutes_and_records_who_and_why(api: Any) -> None:
    client, svc, services, _ = api
    now = int(time.time() * 1000)
    bad = await client.post(
        "/api/v1/silences", json={"matchers": ['provider=~".*"'], "ends_at": now - 1}
    )
    assert bad.status_code == 422 and {p["field"] for p in bad.json()["problems"]} >= {
        "matchers",
        "ends_at",
        "comment",
    }
    r = await client.post("/api/v1/silences", json={"matchers": ['provider="p1"'], "ends_at": now + 3_600_000,
                                                     "comment": "夜间维护窗口"})  # fmt: skip
    assert r.status_code == 201 and r.json()["silence"]["state"] == "active"
    sid = r.json()["silence"]["id"]
    await svc.observe([obs("r1", "p1"), obs("r2", "p2")])
    alerts = {a.labels["resource"]: a for a in (await svc.snapshot()).alerts.values()}
    assert alerts["r1"].silenced_by == (sid,) and alerts["r1"].notified_ms == 0
    assert alerts["r2"].notified_ms > 0
    r = await client.put(f"/api/v1/silences/{sid}", json={"matchers": ['provider="p1"', 'resource="r9"'],
                                                          "ends_at": now + 7_200_000, "comment": "只静默 r9"})  # fmt: skip
    assert r.status_code == 200
    assert (await svc.snapshot()).alerts[
        alerts["r1"].fingerprint
    ].notified_ms > 0  # no longer matched
    r = await client.delete(f"/api/v1/silences/{sid}")
    assert r.status_code == 200 and r.json()["silence"]["state"] == "expired"
    listed = (await client.get("/api/v1/silences")).json()["silences"]
    assert [(s["id"], s["state"]) for s in listed] == [(sid, "expired")]
    rows = await services.store.query(
        "SELECT created_by, comment, updated_by FROM alert_silences FINAL"
    )
    assert rows == [("test bureau", "只静默 r9", "test bureau")]  # who: the caller's name


async def test_assurance_period_crud(api: Any) -> None:
    client, _svc, _, _ = api
    body = {"id": "apec", "name_zh": "重要会议保障", "name_en": "Major meeting", "kind": "meeting",
            "starts_at": "2026-01-01T00:00:00+08:00", "ends_at": "2099-01-01T00:00:00+08:00"}  # fmt: skip
    r = await client.post("/api/v1/assurance-periods", json=body)
    assert r.status_code == 201 and r.json()["period"]["active"]
    r = await client.get("/api/v1/assurance-periods")
    assert r.json()["active"]["name_zh"] == "重要会议保障" and r.json()["active"]["remaining_s"] > 0
    r = await client.put(
        "/api/v1/assurance-periods/apec", json={**body, "ends_at": "2026-01-02T00:00:00"}
    )
    assert r.status_code == 422  # no time zone
    r = await client.put("/api/v1/assurance-periods/apec", json={**body, "name_zh": "峰会保障"})
    assert r.status_code == 200 and r.json()["period"]["name_zh"] == "峰会保障"
    assert (await client.delete("/api/v1/assurance-periods/apec")).status_code == 200
    assert (await client.delete("/api/v1/assurance-periods/apec")).status_code == 404
    assert (await client.get("/api/v1/assurance-periods")).json()["active"] is None


async def test_rule_reload_validates_and_keeps_running_rules(api: Any) -> None:
    client, svc, _, path = api
    path.write_text(RULES.replace("type: event", "type: evnt"), encoding="utf-8")
    r = await client.post("/api/v1/alerts/rules/reload")
    assert r.status_code == 422
    (p,) = r.json()["problems"]
    assert (p["rule"], p["field"], p["line"]) == ("band_high", "type", 7) and p["file"] == str(path)
    assert [x.name for x in svc.config.rules] == ["band_high"]
    path.write_text(RULES.replace("name: band_high", "name: band_very_high"), encoding="utf-8")
    r = await client.post("/api/v1/alerts/rules/reload")
    assert r.status_code == 200 and r.json()["rules"] == ["band_very_high"]
