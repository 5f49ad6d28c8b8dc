"""Utilization against the real services: window SQL (golden), bands and band events, declared periods,
right-sizing on a backfilled week, approval through the API and the adjustment through the Faust app."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import orjson
import pytest
from faust.contrib.asgi import faust_app_running

from opscenter import demo, simulator
from opscenter.services import Services
from opscenter.settings import Settings
from opscenter.wire import (
    TOPIC_DEADLETTER, TOPIC_DECLARATIONS, TOPIC_EVENTS, TOPIC_LIFECYCLE, LifecycleEvent, Spec, json_encoder,
)  # fmt: skip
from streams.app import build_faust_app
from streams.declarations import Declaration
from streams.ingest import Message
from streams.utilization import AGG_KEY, BANDS_KEY, FIGURES_KEY, UtilizationStage, window_figures
from tests.integration.helpers import client_as, consume_all, eventually, produce, telemetry

H = 3_600_000
WALL_MS = int(datetime.now(timezone.utc).timestamp() * 1000)
CST = timezone(timedelta(hours=8))


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


async def register(s: Services, specs: list[tuple[str, str, str, str, int, int, int]], ts: datetime) -> None:
    """Deliver resources (id, provider, unit, district, vcpu, mem_gb, storage_gb) through the registry stage."""
    msgs = [
        Message(0, i, json_encoder.encode(
            LifecycleEvent(f"dl-{rid}", rid, "delivered", ts, p, u, d, rid, Spec(c, m, g), 15)), TOPIC_LIFECYCLE)
        for i, (rid, p, u, d, c, m, g) in enumerate(specs)
    ]  # fmt: skip
    await s.registry_stage.process(msgs)


async def ingest(s: Services, messages: list[bytes], first_offset: int = 0) -> None:
    for i in range(0, len(messages), 200):
        await s.ingest.process([Message(0, first_offset + i + k, v) for k, v in enumerate(messages[i : i + 200])])


def api(s: Services) -> httpx.AsyncClient:
    return client_as(s, "bureau")


def band_events(events: list[dict]) -> set[tuple]:
    return {(e["subject"], e["data"]["metric"], e["data"]["window"], e["data"]["from"], e["data"]["to"])
            for e in events if e["kind"] == "band_change"}  # fmt: skip


# ------------------------------------------------------------------------------ windows and bands

NOW_MS = WALL_MS - WALL_MS % H - 2 * H  # two hours ago, on the hour
M1H = NOW_MS - H  # the first minute of the 1 h window


async def test_windows_golden_bands_and_band_events(services: Services, settings: Settings) -> None:
    s = services
    specs = [("r1", "p1", "u1", "d1", 4, 8, 100), ("r2", "p1", "u1", "d1", 12, 24, 500)]
    await register(s, specs, dt(NOW_MS - 30 * 24 * H))
    r1 = [("r1", M1H + k * 15_000, c, c / 2, 70.0) for k, c in enumerate((10.0, 20.0, 30.0, 40.0))]
    r1 += [("r1", NOW_MS - 60_000, 50.0, 25.0, 70.0), ("r1", NOW_MS - 30_000, 60.0, 30.0, 70.0)]
    r1 += [("r1", NOW_MS - 61 * 60_000, 45.0, 22.5, 70.0)]  # before the 1 h window, inside the 24 h one
    r1 += [("r1", NOW_MS + 30_000, 99.0, 99.0, 99.0)]  # after now: in no window
    r2 = [("r2", NOW_MS - 30 * 60_000 + k * 15_000, 5.0, 50.0, 50.0) for k in range(4)]
    r2 += [("r2", NOW_MS - 72 * H + k * 30_000, float(k + 1), 50.0, 50.0) for k in range(100)]  # 3 days ago
    await ingest(s, [telemetry("p1", "g1", r1), telemetry("p1", "g2", r2)])

    # golden figures, by hand
    f1h = {f.resource_id: f for f in await window_figures(s.store, "1h", NOW_MS)}
    a = f1h["r1"]
    assert (a.samples, a.buckets) == (6, 2)
    assert (a.cpu_mean, a.cpu_max, a.cpu_p95) == (35.0, 60.0, pytest.approx(57.5))  # 50 + 0.75 · 10
    assert (a.mem_mean, a.mem_max, a.mem_p95) == (17.5, 30.0, pytest.approx(28.75))
    assert (a.storage_mean, a.storage_max, a.storage_p95) == (70.0, 70.0, 70.0)
    assert (f1h["r2"].samples, f1h["r2"].cpu_p95, f1h["r2"].mem_mean) == (4, 5.0, 50.0)
    f24 = {f.resource_id: f for f in await window_figures(s.store, "24h", NOW_MS)}
    assert (f24["r1"].samples, f24["r1"].buckets, f24["r1"].cpu_max) == (7, 2, 60.0)
    assert f24["r1"].cpu_mean == pytest.approx(255 / 7)
    assert 50.0 <= f24["r1"].cpu_p95 <= 60.0  # t-digest of 7 values; exact would be 57
    assert (f24["r2"].samples, f24["r2"].buckets) == (4, 1)
    f7d = {f.resource_id: f for f in await window_figures(s.store, "7d", NOW_MS)}
    assert (f7d["r2"].samples, f7d["r2"].buckets, f7d["r2"].cpu_max) == (104, 2, 100.0)
    assert f7d["r2"].cpu_mean == pytest.approx(5070 / 104)
    assert f7d["r2"].cpu_p95 == pytest.approx(94.85, abs=1.5)  # exact (linear) 94.85
    assert [f.resource_id for f in await window_figures(s.store, "7d", NOW_MS, ["r2"])] == ["r2"]

    stage = UtilizationStage(s, clock=lambda: NOW_MS / 1000)
    for w in ("1h", "24h", "7d"):
        await stage.refresh(w, dt(NOW_MS))
    events = await consume_all(settings, TOPIC_EVENTS, expect=4, timeout_s=3)
    assert band_events(events) == {("r2", "cpu", "1h", None, "low"), ("r2", "cpu", "24h", None, "low"),
                                   ("r2", "cpu", "7d", None, "high")}  # fmt: skip
    assert len(events) == 3
    ev = next(e for e in events if e["data"]["window"] == "7d")
    assert (ev["unit_id"], ev["district_id"], ev["provider_id"]) == ("u1", "d1", "p1")
    assert ev["data"]["name"] == "r2"  # the registered name (here the id), for the alert summaries
    assert ev["ts"][:19] == dt(NOW_MS).isoformat()[:19]

    # what dashboards read
    doc = orjson.loads(await s.redis.hget(FIGURES_KEY + "1h", "r1"))
    assert doc["cpu"] == {"mean": 35.0, "max": 60.0, "p95": 57.5} and doc["samples"] == 6
    agg = orjson.loads(await s.redis.hget(AGG_KEY + "1h", "unit:u1"))
    assert agg["cpu"]["mean"] == 12.5  # (4 vCPU · 35 + 12 vCPU · 5) / 16
    assert agg["memory"]["mean"] == pytest.approx((8 * 17.5 + 24 * 50) / 32, abs=1e-3)
    async with api(s) as client:
        r = await client.get("/api/v1/utilization/resources/r1", params={"window": "1h"})
        assert r.status_code == 200 and r.json()["figures"]["cpu"]["p95"] == 57.5
        assert r.json()["bands"] == {"cpu": "normal", "memory": "normal", "storage": "normal"}
        r = await client.get("/api/v1/utilization/units/u1", params={"window": "1h"})
        assert r.json()["aggregate"]["cpu"]["mean"] == 12.5 and r.json()["resources"] == 2
        r = await client.get("/api/v1/utilization/districts/d1", params={"window": "7d"})
        assert r.status_code == 200 and r.json()["aggregate"]["resources"] == 2
        assert (await client.get("/api/v1/utilization/units/nope")).status_code == 404
        assert (await client.get("/api/v1/utilization/resources/r1", params={"window": "2h"})).status_code == 400
        r = await client.get("/api/v1/utilization/out-of-band")
        assert [(x["resource_id"], x["metric"], x["window"], x["band"]) for x in r.json()["rows"]] == [
            ("r2", "cpu", "1h", "low"), ("r2", "cpu", "24h", "low"), ("r2", "cpu", "7d", "high")]  # fmt: skip
        assert r.json()["rows"][0]["p95"] == 5.0 and r.json()["rows"][0]["unit_id"] == "u1"
        r = await client.get("/api/v1/utilization/out-of-band", params={"band": "high", "unit": "u1"})
        assert [x["window"] for x in r.json()["rows"]] == ["7d"]
        assert (await client.get("/api/v1/utilization/out-of-band", params={"district": "d9"})).json()["count"] == 0
        r = await client.get("/api/v1/utilization/out-of-band", params={"window": "1h", "format": "csv"})
        lines = r.text.lstrip("\ufeff").strip().splitlines()
        assert r.headers["content-type"].startswith("text/csv") and len(lines) == 2
        assert lines[0].startswith("resource_id,name,provider_id") and lines[1].startswith("r2,r2,p1,u1,d1,cpu,1h,low,")

    # a restarted worker (fresh memory) recomputes the same bands: nothing is announced again
    restarted = UtilizationStage(s, clock=lambda: NOW_MS / 1000)
    assert [await restarted.refresh(w, dt(NOW_MS)) for w in ("1h", "24h", "7d")] == [[], [], []]

    # r2 gets busy: back to normal in 1 h and 24 h (one event each), still high over 7 d
    busy = [("r2", NOW_MS - 5 * 60_000 + k * 3_000, 50.0, 50.0, 50.0) for k in range(20)]
    await ingest(s, [telemetry("p1", "g3", busy)], first_offset=10)
    out = [await restarted.refresh(w, dt(NOW_MS)) for w in ("1h", "24h", "7d")]
    assert [[(t.from_band, t.to_band) for t in ts] for ts in out] == [[("low", "normal")], [("low", "normal")], []]
    events = await consume_all(settings, TOPIC_EVENTS, expect=6, timeout_s=3)
    assert len(events) == 5 and len({e["event_id"] for e in events}) == 5
    assert (await s.redis.hget(BANDS_KEY + "1h", "r2|cpu")).decode().startswith("normal|")


# ------------------------------------------------------------------------------ declared periods

def _is_monday_local(ms: int) -> bool:
    return dt(ms).astimezone(CST).isoweekday() == 1


async def test_declared_periods_do_not_count_as_evidence(services: Services, settings: Settings) -> None:
    s = services
    await register(s, [(r, "p1", "u1", "d1", 4, 16, 100) for r in ("ra", "rb", "rc", "rd")], dt(NOW_MS - 30 * 24 * H))
    rows = []
    for h in range(NOW_MS - 7 * 24 * H, NOW_MS, H):
        for k in range(4):
            t = h + k * 15 * 60_000
            busy = 90.0 if _is_monday_local(t) else 10.0  # ra, rb: busy on Mondays only (1/7 of the week)
            rows += [("ra", t, busy, 50.0, 50.0), ("rb", t, busy, 50.0, 50.0), ("rc", t, 95.0, 50.0, 50.0),
                     ("rd", t, 95.0, 50.0, 50.0)]  # fmt: skip
    await ingest(s, [telemetry("p1", f"w{i}", rows[i : i + 1000]) for i in range(0, len(rows), 1000)])

    mondays = Declaration("dec-mon", "u1", "peak", "weekly", ["ra"], weekdays=[1])
    last_hours = Declaration("dec-now", "u1", "peak", "once", ["rc"], starts_at=dt(NOW_MS - H), ends_at=dt(NOW_MS + H))
    inverted = Declaration("dec-bad", "u1", "trough", "once", ["ra"], starts_at=dt(NOW_MS), ends_at=dt(NOW_MS - H))
    foreign = Declaration("dec-x", "u2", "trough", "weekly", ["rb"], weekdays=[6])
    other_type = b'{"type": "assurance_period", "name": "two sessions"}'
    msgs = [json_encoder.encode(d) for d in (mondays, last_hours, inverted, foreign)] + [other_type, b"{nope"]
    stored = await s.domains.setdefault("utilization", UtilizationStage(s)).declarations.process(
        [Message(0, i, v, TOPIC_DECLARATIONS) for i, v in enumerate(msgs)]
    )
    assert [d.declaration_id for d in stored] == ["dec-mon", "dec-now"]
    letters = await consume_all(settings, TOPIC_DEADLETTER, expect=4, timeout_s=3)
    assert sorted(d["reason"] for d in letters) == ["foreign_resource", "invalid_declaration", "unparseable"]

    stage = UtilizationStage(s, clock=lambda: NOW_MS / 1000)
    await stage.refresh("7d", dt(NOW_MS))
    assert stage.latest["7d"]["ra"].cpu_p95 == pytest.approx(90.0)  # Mondays weigh 1/7 of the samples
    recs = await stage.evaluate(dt(NOW_MS))
    # ra: without its declared Mondays, p95 is 10 → 1 vCPU; rb (same load, nothing declared): no shrink.
    # rd: 95 % for the last 3 hours → 4 × 95 / 60 = 6.33 → 7 vCPU; rc (same, last hour declared): none.
    assert sorted((r.resource_id, r.metric, r.direction, r.current_size, r.target_size) for r in recs) == [
        ("ra", "cpu", "shrink", 4, 1), ("rd", "cpu", "expand", 4, 7)]  # fmt: skip
    ra = next(r for r in recs if r.resource_id == "ra")
    assert ra.evidence["declared_hours_excluded"] == 24 and ra.evidence["p95"] == pytest.approx(10.0)
    assert await stage.evaluate(dt(NOW_MS)) == []  # one open recommendation per resource and metric


# ------------------------------------------------------------------------------ right-sizing on a backfilled week

# 03:30 local time (19:30 UTC) one or two days ago: a quiet night, so only the overloaded resource is hot
WEEK_END_MS = (WALL_MS - WALL_MS % (24 * H)) - 24 * H + 19 * H + 30 * 60_000
FIXED = ("r-00001", "r-00002", "r-00003", "r-00004", "r-00005", "r-00006")


def oracle(messages: list[bytes], end_ms: int) -> dict[str, dict[str, object]]:
    """numpy's p95 per resource and metric over the week and over each of the last 3 whole hours."""
    cols: dict[str, list[tuple[int, float, float, float]]] = {}
    for m in messages:
        for smp in orjson.loads(m)["samples"]:
            t = int(datetime.fromisoformat(smp["ts"]).timestamp() * 1000)
            cols.setdefault(smp["resource_id"], []).append((t, smp["cpu_pct"], smp["mem_pct"], smp["storage_pct"]))
    out: dict[str, dict[str, object]] = {}
    for rid, rows in cols.items():
        a = np.array(rows)
        hours = [end_ms - end_ms % H - k * H for k in (3, 2, 1)]
        out[rid] = {
            "week": {m: float(np.percentile(a[:, i + 1], 95)) for i, m in enumerate(("cpu", "memory", "storage"))},
            "hours": [{m: float(np.percentile(a[(a[:, 0] >= h) & (a[:, 0] < h + H)][:, i + 1], 95))
                       for i, m in enumerate(("cpu", "memory", "storage"))} for h in hours],
        }  # fmt: skip
    return out


async def test_backfilled_week_yields_exactly_the_expected_recommendations(
    services: Services, settings: Settings
) -> None:
    s = services
    city = demo.city(len(FIXED))
    assert [r.profile for r in city.resources] == ["idle", "idle", "overloaded", "normal", "normal", "normal"]
    await register(s, [(r.resource_id, r.provider_id, r.unit_id, r.district_id, r.vcpu, r.mem_gb, r.storage_gb)
                       for r in city.resources], dt(WEEK_END_MS - 8 * 24 * H))  # fmt: skip
    # an hour of simulated time per message keeps the backfill fast (~1,000 messages)
    batches = simulator.batches(city, WEEK_END_MS - 7 * 24 * H, WEEK_END_MS, rng=random.Random(7),
                                bad_fraction=0.0, batch_size=2000, span_s=3600)  # fmt: skip
    messages = [v for _, v in batches]
    await ingest(s, messages)
    truth = oracle(messages, WEEK_END_MS)

    stage = UtilizationStage(s, clock=lambda: WEEK_END_MS / 1000, tick_s=0.2, short_refresh_s=0.5, long_refresh_s=1.0)
    s.domains["utilization"] = stage
    await stage.tick()
    async with api(s) as client:
        recs = (await client.get("/api/v1/recommendations")).json()["rows"]
        got = sorted((r["resource_id"], r["metric"], r["direction"], r["current_size"], r["target_size"]) for r in recs)
        # idle r-00001 (4 vCPU, 8 GB) and r-00002 (4 vCPU, 16 GB): cpu p95 ≈ 9 → 1 vCPU; memory p95 ≈ 11 / 13 →
        # 8 × 11 / 60 → 2 GB and 16 × 13 / 60 → 4 GB. Overloaded r-00003 (4 vCPU): cpu p95 ≈ 97 → 7 vCPU.
        assert got == [
            ("r-00001", "cpu", "shrink", 4, 1), ("r-00001", "memory", "shrink", 8, 2),
            ("r-00002", "cpu", "shrink", 4, 1), ("r-00002", "memory", "shrink", 16, 4),
            ("r-00003", "cpu", "expand", 4, 7),
        ]  # fmt: skip
        for r in recs:  # the evidence agrees with numpy over the same samples
            t = truth[r["resource_id"]]
            if r["direction"] == "shrink":
                assert r["evidence"]["p95"] == pytest.approx(t["week"][r["metric"]], rel=0.03)  # type: ignore[index]
                assert r["evidence"]["hours_with_data"] == 168
            else:
                assert [v for _, v in r["evidence"]["hours"]] == pytest.approx(
                    [h[r["metric"]] for h in t["hours"]], rel=0.03)  # type: ignore[union-attr, index]  # fmt: skip
            assert r["status"] == "proposed" and r["proposed_at"].startswith(dt(WEEK_END_MS).isoformat()[:16])
        # what numpy says must lead to the same set (no other resource or metric crosses a threshold)
        expected = {(rid, m) for rid, t in truth.items() for m, v in t["week"].items() if v < 20}  # type: ignore[union-attr]
        expected |= {(rid, m) for rid, t in truth.items() for m in ("cpu", "memory", "storage")
                     if all(h[m] > 80 for h in t["hours"])}  # type: ignore[union-attr, index]  # fmt: skip
        assert expected == {(g[0], g[1]) for g in got}

        await stage.tick()  # evaluated again: still one open recommendation per resource and metric
        assert (await client.get("/api/v1/recommendations")).json()["count"] == 5
        by = {(r["resource_id"], r["metric"]): r["rec_id"] for r in recs}
        r = await client.post(f"/api/v1/recommendations/{by[('r-00002', 'memory')]}/reject", json={"reason": " "})
        assert r.status_code == 400 and r.json()["error"] == "reason_required" and r.json()["message"]
        reason = {"reason": "月底结算高峰"}
        r = await client.post(f"/api/v1/recommendations/{by[('r-00002', 'memory')]}/reject", json=reason)
        assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["decided_by"] == "test bureau"
        r = await client.post(f"/api/v1/recommendations/{by[('r-00001', 'cpu')]}/approve")
        assert r.status_code == 200 and r.json()["status"] == "approved"
        assert (await client.post(f"/api/v1/recommendations/{by[('r-00001', 'cpu')]}/approve")).status_code == 409
        assert (await client.post("/api/v1/recommendations/rs-nope/approve")).status_code == 404
        r = await client.get("/api/v1/recommendations", params={"status": "proposed", "format": "csv"})
        assert len(r.text.strip().splitlines()) == 1 + 3

        # the provider adjusts r-00001 as approved; the registry agent and the utilization timer do the rest
        adjusted = LifecycleEvent("adj-1", "r-00001", "adjusted", datetime.now(timezone.utc),
                                  city.resources[0].provider_id, spec=Spec(1, 8, 100))  # fmt: skip
        app = build_faust_app(s)
        async with faust_app_running(app, stop_timeout=20):
            await produce(settings, TOPIC_LIFECYCLE, [(b"r-00001", json_encoder.encode(adjusted))])

            async def applied() -> list:
                rows = (await client.get("/api/v1/recommendations", params={"status": "applied"})).json()["rows"]
                return rows

            done = (await eventually(applied, timeout_s=40))[0]
            assert (done["rec_id"], done["applied_event_id"]) == (by[("r-00001", "cpu")], "adj-1")

            # a unit declares a trough period through the API; the declarations agent stores it
            body = {"declaration_id": "dec-api", "unit_id": city.resources[1].unit_id, "kind": "trough",
                    "recurrence": "monthly", "month_days": [1, 2], "resource_ids": ["r-00002"]}  # fmt: skip
            r = await client.post("/api/v1/declarations", json=body)
            assert r.status_code == 202, r.text
            bad = {**body, "declaration_id": "dec-api-2", "resource_ids": ["r-00003"]}  # another unit's resource
            assert (await client.post("/api/v1/declarations", json=bad)).status_code == 403
            inverted = {**body, "declaration_id": "dec-api-3", "time_from": "18:00", "time_to": "08:00"}
            assert (await client.post("/api/v1/declarations", json=inverted)).json()["error"] == "inverted_range"

            async def declared() -> list:
                return (await client.get("/api/v1/declarations")).json()["rows"]

            rows = await eventually(declared, timeout_s=20)
            assert [(d["declaration_id"], d["declared_by"]) for d in rows] == [("dec-api", "test bureau")]
            await eventually(lambda: _evaluated_again(stage), timeout_s=20)

        final = sorted((r["resource_id"], r["metric"], r["status"])
                       for r in (await client.get("/api/v1/recommendations")).json()["rows"])  # fmt: skip
        # nothing new: r-00001 cpu was adjusted (its evidence predates the new size), r-00002 memory is quiet
        assert final == [("r-00001", "cpu", "applied"), ("r-00001", "memory", "proposed"),
                         ("r-00002", "cpu", "proposed"), ("r-00002", "memory", "rejected"),
                         ("r-00003", "cpu", "proposed")]  # fmt: skip
    log = await s.store.query(
        "SELECT action, actor FROM recommendation_log FINAL WHERE rec_id = {id:String} ORDER BY ts",
        {"id": by[("r-00001", "cpu")]},
    )
    assert log == [("proposed", "system"), ("approved", "test bureau"), ("applied", "lifecycle")]
    rejected = await s.store.query("SELECT reason FROM recommendation_log FINAL WHERE action = 'rejected'")
    assert rejected == [("月底结算高峰",)]


async def _evaluated_again(stage: UtilizationStage) -> bool:
    """True once the timer has run a long refresh after the adjustment landed (7 d figures re-read)."""
    marker = stage.__dict__.setdefault("_test_marker", stage._due.get("long", 0.0))
    return stage._due.get("long", 0.0) > marker + 1.5

