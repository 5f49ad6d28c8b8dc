"""The SLA domain against the real broker, Valkey and chDB: state, dead letters, timers, restarts, HTTP."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from aiokafka import AIOKafkaConsumer
from faust.contrib.asgi import faust_app_running

from dashboard.app import build_app
from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings
from opscenter.tokens import TokenStore
from opscenter.wire import (
    TOPIC_DEADLETTER,
    TOPIC_EVENTS,
    TOPIC_INCIDENTS,
    TOPIC_LIFECYCLE,
    LifecycleEvent,
    Spec,
    json_encoder,
)
from opscenter.wire_incidents import IncidentEvent, encode
from streams.app import build_faust_app
from streams.deadlines import INFLIGHT_KEY, DeadlineTimer
from streams.ingest import Message
from streams.sla import load_targets
from streams.sla_agent import build_domain, incident_key
from tests.integration.helpers import consume_all, delivered, eventually, produce

MIN = 60_000
BACKLOG = 3000
#: short targets so deadlines pass within the test (P2 response: must outlive a restart)
SHORT_TARGETS = """\
near_breach_fraction: 0.8
severities:
  P1: {response: 3s, restore: 10m}
  P2: {response: 20s, restore: 10m}
  P3: {response: 1h, restore: 2h}
  P4: {response: 1h, restore: 2h}
"""


def inc_event(eid: str, inc: str, type_: str, ts_ms: int, provider: str = "p1", **kw: Any) -> bytes:
    ts = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    return encode(IncidentEvent(eid, inc, type_, ts, provider, **kw))  # type: ignore[arg-type]


def now_ms() -> int:
    return int(time.time() * 1000)


class Watcher:
    """Reads topics from the start in the background, noting when each message arrived."""

    def __init__(self, settings: Settings, *topics: str) -> None:
        self.settings, self.topics = settings, topics
        self.seen: list[tuple[int, str, dict]] = []  # (arrival ms, topic, value)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Watcher:
        self._consumer = AIOKafkaConsumer(
            *self.topics, bootstrap_servers=self.settings.kafka_bootstrap(), auto_offset_reset="earliest",
            group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50,
        )  # fmt: skip
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        async for m in self._consumer:
            self.seen.append((now_ms(), m.topic, orjson.loads(m.value)))

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    def events(self, subject: str | None = None, prefix: str = "sla_") -> list[tuple[int, dict]]:
        return [(t, v) for t, topic, v in self.seen if topic == TOPIC_EVENTS and v["kind"].startswith(prefix)
                and (subject is None or v["subject"] == subject)]  # fmt: skip

    def dead(self) -> list[dict]:
        return [v for _, topic, v in self.seen if topic == TOPIC_DEADLETTER]


async def _now(value: Any) -> Any:
    return value


async def _hash_state(services: Services, inc: str) -> str | None:
    v = await services.redis.hget(incident_key(inc), "state")
    return v.decode() if v else None


# -- through Faust, with a restart ---------------------------------------------------------------


async def test_breach_fires_on_time_after_a_worker_restart_without_new_input(settings: Settings, tmp_path: Path) -> None:
    # Tansu holds a group join until the stopped member's session expires: keep it short
    settings = settings.model_copy(update={"broker_session_timeout_s": 4.0, "broker_heartbeat_s": 1.0})
    path = tmp_path / "sla.yaml"
    path.write_text(SHORT_TARGETS, encoding="utf-8")
    targets = load_targets(path)
    await create_topics(settings)
    async with Watcher(settings, TOPIC_EVENTS, TOPIC_DEADLETTER) as watch:
        services = await open_services(settings)
        services.domains["sla_targets"] = targets
        try:
            async with faust_app_running(build_faust_app(services), stop_timeout=20):
                t0 = now_ms()
                opened_a = inc_event("a-1", "A", "opened", t0, severity="P2", resource_ids=["r1"])
                await produce(settings, TOPIC_INCIDENTS, [
                    (b"A", opened_a),
                    (b"B", inc_event("b-1", "B", "opened", t0, severity="P1")),  # due while no worker runs
                    (b"C", inc_event("c-1", "C", "opened", t0, severity="P1")),
                    (b"C", inc_event("c-2", "C", "acknowledged", t0 + 500)),  # before its 3 s deadline
                    (b"D", inc_event("d-1", "D", "opened", t0, severity="P1", drill=True)),
                    (b"E", inc_event("e-1", "E", "opened", t0, severity="P1")),
                    (b"X", inc_event("x-1", "X", "resolved", t0)),  # never opened
                    (b"A", opened_a),  # a redelivery
                ])  # fmt: skip
                await eventually(lambda: _hash_state(services, "C"), timeout_s=15)
                assert await _hash_state(services, "C") == "acknowledged"
                await eventually(lambda: _now(watch.dead()), timeout_s=10)
        finally:
            await services.aclose()
        stopped = now_ms()
        assert stopped < t0 + 13_000, "the first worker must stop before A's near-breach (test too slow)"
        assert not watch.events("A")
        # E is acknowledged in time while no worker runs, behind a backlog (drills: no deadlines);
        # its deadline passes before the restart, so the new worker must apply the backlog first
        backlog = [(f"Z{i}".encode(), inc_event(f"z{i}", f"Z{i}", "opened", t0, severity="P4", drill=True))
                   for i in range(BACKLOG)]  # fmt: skip
        await produce(settings, TOPIC_INCIDENTS, [*backlog, (b"E", inc_event("e-2", "E", "acknowledged", t0 + 1500))])

        services = await open_services(settings)  # a new worker: nothing carried over in memory
        services.domains["sla_targets"] = targets
        try:
            async with faust_app_running(build_faust_app(services), stop_timeout=20):
                restarted = now_ms()
                await eventually(lambda: _now(len(watch.events("A")) >= 2), timeout_s=30, every_s=0.05)
                await asyncio.sleep(1.0)  # anything extra (a double fire) would show up now
                fired_rows = await services.store.query(
                    "SELECT subject, which, kind FROM sla_signals FINAL ORDER BY subject, at, kind"
                )
        finally:
            await services.aclose()

    a = watch.events("A")
    assert [(v["kind"], v["data"]["deadline"]) for _, v in a] == [
        ("sla_near_breach", "response"), ("sla_breach", "response")]  # fmt: skip
    assert restarted < t0 + int(0.8 * 20_000), "the restart must complete before A's near-breach"
    for (arrived, v), due in zip(a, (t0 + int(0.8 * 20_000), t0 + 20_000)):
        assert int(datetime.fromisoformat(v["ts"]).timestamp() * 1000) == due
        assert 0 <= arrived - due < 1500, f"{v['kind']} arrived {arrived - due} ms after its instant"
    assert a[1][1]["event_id"] == f"sla:A:response:sla_breach:{t0 + 20_000}"
    assert (a[1][1]["severity"], a[1][1]["provider_id"], a[1][1]["resource_id"]) == ("P2", "p1", "r1")
    # B's deadline passed while no worker ran: fired once, right after the restart
    b = watch.events("B")
    assert sorted(v["kind"] for _, v in b) == ["sla_breach", "sla_near_breach"]
    assert all(arrived >= t0 + 3000 for arrived, _ in b)
    assert watch.events("C") == [] and watch.events("D") == []  # acknowledged in time; a drill
    assert watch.events("E") == []  # its acknowledgement was applied before its deadline was judged
    assert len(watch.events()) == 4
    notices = [v for _, v in watch.events(prefix="incident_")]
    assert sorted((v["subject"], v["kind"]) for v in notices if not v["subject"].startswith("Z")) == [
        ("A", "incident_opened"), ("B", "incident_opened"), ("C", "incident_acknowledged"), ("C", "incident_opened"),
        ("D", "incident_opened"), ("E", "incident_acknowledged"), ("E", "incident_opened")]  # fmt: skip
    assert len(notices) == 7 + BACKLOG and len({v["event_id"] for v in notices}) == len(notices)  # once each
    assert next(v for v in notices if v["subject"] == "D")["data"]["drill"] is True
    assert fired_rows == [("A", "response", "sla_near_breach"), ("A", "response", "sla_breach"),
                          ("B", "response", "sla_near_breach"), ("B", "response", "sla_breach")]  # fmt: skip
    dead = watch.dead()
    assert [(d["reason"], d["provider_id"]) for d in dead] == [("invalid_incident", "p1")]
    assert dead[0]["detail"].startswith("not_opened:") and dead[0]["source"]["topic"] == TOPIC_INCIDENTS


# -- the stages driven directly, with a clock the test controls ----------------------------------


def messages(*values: bytes, first_offset: int = 0) -> list[Message]:
    return [Message(0, first_offset + i, v, TOPIC_INCIDENTS) for i, v in enumerate(values)]


async def test_default_p1_timeline_with_a_controlled_clock(services: Services, settings: Settings) -> None:
    clock = {"ms": 1_790_000_000_000}
    domain = build_domain(services)  # the shipped targets file: P1 15 min / 4 h
    domain.stage.clock = domain.timer.clock = lambda: clock["ms"] / 1000
    t0 = clock["ms"]
    batch = messages(
        inc_event("e1", "P1-late", "opened", t0, severity="P1"),
        inc_event("e2", "P1-ack", "opened", t0, severity="P1"),
    )
    await domain.stage.process(batch)
    clock["ms"] = t0 + 14 * MIN
    await domain.stage.process(messages(inc_event("e3", "P1-ack", "acknowledged", t0 + 14 * MIN), first_offset=2))

    async def fired_at(offset_ms: int) -> list[tuple[str, str, str]]:
        clock["ms"] = t0 + offset_ms
        return [(e.subject, e.data["deadline"], e.kind) for e in await domain.timer.tick()]  # type: ignore[misc]

    assert await fired_at(12 * MIN - 1) == []
    assert sorted(await fired_at(12 * MIN)) == [("P1-ack", "response", "sla_near_breach"),
                                                ("P1-late", "response", "sla_near_breach")]  # fmt: skip
    assert await fired_at(15 * MIN - 1) == []
    assert await fired_at(15 * MIN) == [("P1-late", "response", "sla_breach")]  # not P1-ack: acked at 14 min
    assert await fired_at(int(3.2 * 60 * MIN) - 1) == []
    assert sorted(await fired_at(int(3.2 * 60 * MIN))) == [("P1-ack", "restore", "sla_near_breach"),
                                                           ("P1-late", "restore", "sla_near_breach")]  # fmt: skip
    assert await fired_at(4 * 60 * MIN - 1) == []
    assert sorted(await fired_at(4 * 60 * MIN)) == [("P1-ack", "restore", "sla_breach"),
                                                    ("P1-late", "restore", "sla_breach")]  # fmt: skip
    assert await domain.incidents.deadlines.pending() == {}

    # a redelivery of the whole history adds nothing to ClickHouse and changes no state
    await domain.stage.process(batch + messages(inc_event("e3", "P1-ack", "acknowledged", t0 + 14 * MIN), first_offset=2))
    rows = await services.store.query("SELECT incident_id, count() FROM incident_events FINAL GROUP BY incident_id ORDER BY 1")
    assert rows == [("P1-ack", 2), ("P1-late", 1)]
    state = await services.store.query("SELECT incident_id, state, version FROM incidents FINAL ORDER BY 1")
    assert state == [("P1-ack", "acknowledged", 2), ("P1-late", "open", 1)]
    assert await fired_at(5 * 60 * MIN) == []


async def test_two_workers_never_fire_the_same_deadline_and_a_lost_claim_is_retried(services: Services) -> None:
    clock = {"ms": 1_790_000_000_000}
    domain = build_domain(services)
    domain.stage.clock = lambda: clock["ms"] / 1000
    t0 = clock["ms"]
    await domain.stage.process(messages(*(inc_event(f"e{i}", f"I{i}", "opened", t0, severity="P1") for i in range(20))))
    other = DeadlineTimer(domain.incidents.deadlines, services.store, services.send)
    other.handlers["inc"] = domain.fire_incidents
    at = t0 + 15 * MIN
    a, b = await asyncio.gather(domain.timer.tick(at), other.tick(at))
    ids = [e.event_id for e in a + b]
    assert len(ids) == 40 and len(set(ids)) == 40  # 20 near-breaches + 20 breaches, each once

    # a worker claims the restore signals and dies before sending them: after the lease another fires them
    end = t0 + 240 * MIN
    claimed = await domain.incidents.deadlines.claim(end)
    assert len(claimed) == 40 and await services.redis.zcard(INFLIGHT_KEY) == 40
    assert await other.tick(end + 1000) == []  # still leased to the dead worker
    lease_ms = domain.incidents.deadlines.lease_ms
    refired = await other.tick(end + lease_ms + 1)
    assert len(refired) == 40 and f"sla:I0:restore:sla_breach:{end}" in {e.event_id for e in refired}
    assert await services.redis.zcard(INFLIGHT_KEY) == 0


async def test_rebuild_from_clickhouse_after_redis_lost_everything(services: Services) -> None:
    clock = {"ms": 1_790_000_000_000}
    domain = build_domain(services)
    domain.stage.clock = domain.timer.clock = lambda: clock["ms"] / 1000
    t0 = clock["ms"]
    await domain.stage.process(messages(
        inc_event("e1", "R1", "opened", t0, severity="P1"),
        inc_event("e2", "R2", "opened", t0, severity="P2"),
        inc_event("e3", "R3", "opened", t0, severity="P1"),
        inc_event("e4", "R3", "resolved", t0 + MIN),
        inc_event("e5", "R3", "closed", t0 + 2 * MIN),
    ))  # fmt: skip
    clock["ms"] = t0 + 13 * MIN
    assert {e.subject for e in await domain.timer.tick()} == {"R1"}  # P1's response near-breach
    before = await domain.incidents.deadlines.pending()
    await services.redis.flushall()

    fresh = build_domain(services)  # a new worker on an empty Redis
    assert await fresh.incidents.rebuild() == 2  # R1, R2: not closed
    assert await fresh.incidents.deadlines.pending() == before  # the fired near-breach is not back
    assert await _hash_state(services, "R1") == "open" and await _hash_state(services, "R3") is None
    # a redelivered event of the closed incident is still recognised (state read from ClickHouse)
    await fresh.stage.process(messages(inc_event("e5", "R3", "closed", t0 + 2 * MIN), first_offset=5))
    dead = await consume_all(services.settings, TOPIC_DEADLETTER, expect=1, timeout_s=2)
    assert dead == []


# -- §19 decision deadlines ----------------------------------------------------------------------


async def test_decision_deadline_counts_working_days_across_national_day(services: Services) -> None:
    sh = ZoneInfo("Asia/Shanghai")
    domain = build_domain(services)
    assert domain.decisions is not None

    def life(eid: str, rid: str, type_: str, ts: datetime) -> bytes:
        spec = Spec(2, 4, 50) if type_ == "applied" else None
        return json_encoder.encode(LifecycleEvent(eid, rid, type_, ts, "p1", "u1", "d1", rid, spec))  # type: ignore[arg-type]

    values = [
        life("l1", "L1", "applied", datetime(2026, 9, 30, 10, tzinfo=sh)),  # never decided
        life("l2", "L2", "applied", datetime(2026, 9, 30, 10, tzinfo=sh)),
        life("l3", "L2", "accepted", datetime(2026, 10, 8, 9, tzinfo=sh)),  # decided in time
        life("l4", "L3", "applied", datetime(2026, 9, 30, 10, tzinfo=sh)),
        life("l5", "L3", "refused", datetime(2026, 10, 8, 10, tzinfo=sh)),
        life("l6", "L3", "applied", datetime(2026, 10, 9, 17, tzinfo=sh)),  # applied again on a Friday
    ]
    msgs = [Message(0, i, v, TOPIC_LIFECYCLE) for i, v in enumerate(values)]
    await services.registry_stage.process(msgs)
    await domain.decisions.process(msgs)
    due_l1 = int(datetime(2026, 10, 10, tzinfo=sh).timestamp() * 1000)  # end of Fri 9 Oct (1–7 Oct off)
    due_l3 = int(datetime(2026, 10, 13, tzinfo=sh).timestamp() * 1000)  # Sat 10 Oct (make-up), Mon 12 Oct
    # every application has its deadline; decided or superseded ones are dropped when due
    assert await domain.incidents.deadlines.pending() == {
        f"life|L1|decision|lifecycle_deadline|{due_l1}": due_l1,
        f"life|L2|decision|lifecycle_deadline|{due_l1}": due_l1,
        f"life|L3|decision|lifecycle_deadline|{due_l1}": due_l1,
        f"life|L3|decision|lifecycle_deadline|{due_l3}": due_l3,
    }
    assert await domain.timer.tick(due_l1 - 1) == []
    fired = await domain.timer.tick(due_l1)
    assert [(e.event_id, e.kind, e.resource_id, e.unit_id, e.data["deadline"], e.data["name"]) for e in fired] == [
        (f"lifecycle_deadline:L1:{due_l1}", "lifecycle_deadline", "L1", "u1", "decision", "L1")]  # fmt: skip
    assert [e.subject for e in await domain.timer.tick(due_l3)] == ["L3"]
    assert await domain.incidents.deadlines.pending() == {}
    rows = await services.store.query("SELECT subject, which FROM sla_signals FINAL ORDER BY at")
    assert rows == [("L1", "decision"), ("L3", "decision")]
    sent = await consume_all(services.settings, TOPIC_EVENTS, expect=4, timeout_s=5)
    assert sorted((e["kind"], e["subject"], e["data"].get("decision", "")) for e in sent) == [
        ("lifecycle_deadline", "L1", ""), ("lifecycle_deadline", "L3", ""),
        ("lifecycle_decided", "L2", "accepted"), ("lifecycle_decided", "L3", "refused")]  # fmt: skip


# -- HTTP -----------------------------------------------------------------------------------------


async def test_post_incident_accepts_and_refuses_with_clear_errors(services: Services, settings: Settings) -> None:
    tokens = TokenStore(services.store)
    await tokens.add("tok-p1", "p1", "provider", "p1")
    await tokens.add("tok-p2", "p2", "provider", "p2")
    await tokens.add("tok-b", "officer", "bureau", "")
    await produce(settings, TOPIC_LIFECYCLE, [(b"r2", delivered("r2", "p2"))])
    await services.lifecycle_reader.catch_up(min_interval_s=0)
    domain = build_domain(services)
    await domain.stage.process(messages(inc_event("e0", "OWNED-BY-P2", "opened", now_ms(), "p2", severity="P3")))
    ts = datetime.now(timezone.utc).isoformat()

    def body(**kw: Any) -> dict[str, Any]:
        return {"event_id": "h1", "incident_id": "H1", "type": "opened", "ts": ts, "severity": "P1",
                "resource_ids": [], "text": "存储阵列告警", **kw}  # fmt: skip

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(services)), base_url="http://t") as c:
        async def post(doc: Any, token: str = "tok-p1", raw: bytes | None = None) -> httpx.Response:
            content = raw if raw is not None else orjson.dumps(doc)
            return await c.post("/api/v1/incidents", content=content, headers={"authorization": f"Bearer {token}"})

        r = await post(body())
        assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
        assert (await post(body())).status_code == 202  # a client retry: harmless (same id, same content)
        cases = [
            (post(None, raw=b"{nope"), 400, "unparseable"),
            (post(body(ts="2026-10-01T10:00:00")), 400, "schema"),
            (post(body(severity="P9")), 400, "schema"),
            (post(body(severity=None)), 400, "missing_severity"),
            (post(body(ts=(datetime.now(timezone.utc) + timedelta(hours=1)).isoformat())), 400, "future_timestamp"),
            (post(body(provider_id="p2")), 403, "foreign_provider"),
            (post(body(resource_ids=["r2"])), 403, "foreign_resource"),
            (post(body(incident_id="OWNED-BY-P2", type="acknowledged", severity=None)), 403, "foreign_incident"),
            (post(body(), token="tok-b"), 403, "forbidden"),
            (post(body(), token="nope"), 401, "unauthenticated"),
        ]
        for call, status, code in cases:
            r = await call
            assert (r.status_code, r.json()["error"]) == (status, code), r.text
            assert r.json()["message"] and r.json()["message_en"]
        assert r.headers["x-content-type-options"] == "nosniff"

    produced = await consume_all(settings, TOPIC_INCIDENTS, expect=3, timeout_s=3)
    assert [(p["event_id"], p["provider_id"], p["text"]) for p in produced] == [("h1", "p1", "存储阵列告警")] * 2


# -- provider service quality (golden) -----------------------------------------------------------


async def test_sla_report_golden(services: Services, settings: Settings) -> None:
    """Hand-computed MTTA, MTTR and within-target shares from seeded incidents (drills apart)."""
    sh = ZoneInfo("Asia/Shanghai")
    domain = build_domain(services)  # shipped targets: P1 15 min / 4 h, P2 30 min / 8 h, P3 2 h / 24 h
    H = 60 * MIN

    def at(day: int, hour: int = 10, month: int = 10) -> int:
        return int(datetime(2026, month, day, hour, tzinfo=sh).timestamp() * 1000)

    domain.stage.clock = lambda: at(1, 12, month=12) / 1000  # the ingest time of the seeded events
    seeded = [
        # p1, P1: responded 10 min (in time), restored 2 h (in time)
        ("I1", "p1", "P1", False, at(2), [("acknowledged", 10 * MIN), ("resolved", 2 * H)]),
        # p1, P1: responded 20 min (late), restored 5 h (late)
        ("I2", "p1", "P1", False, at(3), [("acknowledged", 20 * MIN), ("resolved", 5 * H)]),
        # p1, P2: resolved after 1 h without acknowledgement: response 1 h (late), restore in time
        ("I3", "p1", "P2", False, at(5), [("resolved", H)]),
        # p1, P1 drill: excluded from every figure
        ("I4", "p1", "P1", True, at(6), [("acknowledged", MIN), ("resolved", 10 * MIN)]),
        # p1, P1: never answered; both deadlines long passed
        ("I5", "p1", "P1", False, at(20), []),
        # p1, P1 opened 07:00 on 1 Nov in Shanghai (23:00 UTC on 31 Oct): November
        ("I6", "p1", "P1", False, at(1, 7, month=11), [("acknowledged", 5 * MIN), ("resolved", H)]),
        # p2, P3: in time
        ("I7", "p2", "P3", False, at(10), [("acknowledged", H), ("resolved", 10 * H)]),
        # p2, P4: never answered: no MTTA / MTTR, both clocks decided (passed) and missed
        ("I8", "p2", "P4", False, at(25), []),
    ]
    values = []
    for inc, provider, sev, drill, opened, steps in seeded:
        values.append(inc_event(f"{inc}-0", inc, "opened", opened, provider, severity=sev, drill=drill))
        values += [inc_event(f"{inc}-{i + 1}", inc, t, opened + d, provider) for i, (t, d) in enumerate(steps)]
    await domain.stage.process(messages(*values))

    tokens = TokenStore(services.store)
    await tokens.add("tok-b", "officer", "bureau", "")
    await tokens.add("tok-p2", "p2", "provider", "p2")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(services)), base_url="http://t") as c:
        async def get(token: str, **params: str) -> httpx.Response:
            return await c.get("/api/v1/sla", params=params, headers={"authorization": f"Bearer {token}"})

        r = await get("tok-b", **{"from": "2026-10-01", "to": "2026-11-01", "group_by": "month"})
        assert r.status_code == 200, r.text
        rows = {(x["provider_id"], x["period"], x["severity"]): x for x in r.json()["rows"]}
        assert set(rows) == {("p1", "2026-10-01", "P1"), ("p1", "2026-10-01", "P2"), ("p2", "2026-10-01", "P3"),
                             ("p2", "2026-10-01", "P4")}  # fmt: skip
        figures = ("incidents", "drills", "responded", "restored", "mtta_s", "mttr_s", "response_decided",
                   "response_within", "restore_decided", "restore_within", "response_within_share",
                   "restore_within_share")  # fmt: skip
        assert [rows[("p1", "2026-10-01", "P1")][f] for f in figures] == [
            3, 1, 2, 2, 900.0, 12600.0, 3, 1, 3, 1, 0.3333, 0.3333]  # (600+1200)/2 s, (7200+18000)/2 s
        assert [rows[("p1", "2026-10-01", "P2")][f] for f in figures] == [1, 0, 1, 1, 3600.0, 3600.0, 1, 0, 1, 1, 0.0, 1.0]
        assert [rows[("p2", "2026-10-01", "P3")][f] for f in figures] == [1, 0, 1, 1, 3600.0, 36000.0, 1, 1, 1, 1, 1.0, 1.0]
        assert [rows[("p2", "2026-10-01", "P4")][f] for f in figures] == [1, 0, 0, 0, None, None, 1, 0, 1, 0, 0.0, 0.0]

        r = await get("tok-b", **{"from": "2026-10-01", "to": "2026-12-01", "group_by": "day", "provider": "p1"})
        days = [(x["period"], x["severity"], x["incidents"], x["drills"]) for x in r.json()["rows"]]
        assert days == [("2026-10-02", "P1", 1, 0), ("2026-10-03", "P1", 1, 0), ("2026-10-05", "P2", 1, 0),
                        ("2026-10-06", "P1", 0, 1), ("2026-10-20", "P1", 1, 0), ("2026-11-01", "P1", 1, 0)]  # fmt: skip

        r = await get("tok-p2", **{"from": "2026-10-01", "to": "2027-01-01", "group_by": "quarter"})
        assert [(x["provider_id"], x["period"], x["severity"]) for x in r.json()["rows"]] == [
            ("p2", "2026-10-01", "P3"), ("p2", "2026-10-01", "P4")]  # fmt: skip
        assert (await get("tok-p2", provider="p1")).status_code == 403
        assert (await get("tok-b", group_by="week")).json()["error"] == "bad_parameter"
        assert (await get("tok-b", **{"from": "2026-10-05", "to": "2026-10-01"})).json()["error"] == "bad_range"
        assert (await get("nope")).status_code == 401


async def test_assurance_period_tightens_the_targets_of_incidents_opened_inside_it(services: Services) -> None:
    """§28/R8: inside an assurance period a P1 must be acknowledged in 10 min (sla_assurance.yaml), not 15."""
    import orjson

    clock = {"ms": 1_790_000_000_000}
    t0 = clock["ms"]
    await services.redis.hset("opscenter:alerts:periods", "guoqing", orjson.dumps(
        {"id": "guoqing", "name_zh": "国庆重保", "name_en": "National Day", "starts_ms": t0 - MIN, "ends_ms": t0 + 60 * MIN}))  # fmt: skip
    domain = build_domain(services)
    domain.stage.clock = domain.timer.clock = lambda: clock["ms"] / 1000
    await domain.refresh_periods()
    await domain.stage.process(messages(inc_event("e1", "P1-in", "opened", t0, severity="P1")))

    async def fired_at(offset_ms: int) -> list[tuple[str, str]]:
        clock["ms"] = t0 + offset_ms
        return [(e.subject, e.kind) for e in await domain.timer.tick() if e.data["deadline"] == "response"]  # type: ignore[misc]

    assert await fired_at(10 * MIN - 1) == [("P1-in", "sla_near_breach")]  # 80 % of 10 min = 8 min
    assert await fired_at(10 * MIN) == [("P1-in", "sla_breach")]  # 10 min inside the period
    # opened after the period ended: the normal 15 min
    clock["ms"] = t0 + 61 * MIN
    await domain.stage.process(messages(inc_event("e2", "P1-after", "opened", t0 + 61 * MIN, severity="P1"), first_offset=1))
    assert await fired_at(61 * MIN + 15 * MIN - 1) == [("P1-after", "sla_near_breach")]
    assert await fired_at(61 * MIN + 15 * MIN) == [("P1-after", "sla_breach")]
