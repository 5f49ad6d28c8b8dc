"""Silence, outage and completeness judgement (streams/nodata.py) as timelines with a controlled clock."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

from opscenter.wire import TOPIC_EVENTS, TOPIC_INCIDENTS, event_decoder
from opscenter.wire_incidents import incident_decoder
from streams.nodata import (
    Change,
    Policy,
    Silence,
    Watched,
    judge_outages,
    judge_quality,
    judge_silences,
    window_completeness,
)

T0 = 1_780_000_000_000  # ms
S = 1000
POLICY = Policy(intervals=3, incident_after_s=900, incident_severity="P3", startup_grace_s=0,
                outage_pct=50, outage_min_resources=3)  # fmt: skip


def res(rid: str, provider: str = "p1", interval_s: int = 15, delivered_ms: int = T0,
        deregistered_ms: int | None = None, name: str = "") -> Watched:  # fmt: skip
    return Watched(rid, provider, "u1", "d1", interval_s, delivered_ms, deregistered_ms, name)


class World:
    """The stored state between rounds, as Redis would hold it (every compare-and-set wins here)."""

    def __init__(self, *watched: Watched, policy: Policy = POLICY, started_ms: int = T0) -> None:
        self.watched, self.policy, self.started_ms = list(watched), policy, started_ms
        self.tables: dict[str, dict[str, bytes]] = {"silence": {}, "outage": {}, "quality": {}}
        self.seen: dict[str, int | None] = {}
        self.ended: set[str] = set()
        self.sent: list[tuple[float, str, dict[str, Any]]] = []  # (s after T0, topic, message)

    def apply(self, changes: list[Change], now_ms: int) -> None:
        for c in changes:
            table = self.tables[c.table]
            assert table.get(c.key) == c.old
            if c.new is None:
                table.pop(c.key, None)
            else:
                table[c.key] = c.new
            for m in c.messages:
                doc = msgspec.json.decode(m.value)
                dec = event_decoder if m.topic == TOPIC_EVENTS else incident_decoder
                assert dec.decode(m.value)  # every message is valid on its topic
                self.sent.append(((now_ms - T0) / 1000, m.topic, doc))

    def at(self, s: float) -> World:
        now = T0 + int(s * 1000)
        changes, _ = judge_silences(now, self.started_ms, self.watched, self.seen, self.tables["silence"],
                                    self.policy, self.ended)  # fmt: skip
        self.apply(changes, now)
        silent = {k: msgspec.json.decode(v, type=Silence) for k, v in self.tables["silence"].items()}
        self.apply(judge_outages(now, self.watched, silent, self.tables["outage"], self.policy), now)
        return self

    def sample(self, rid: str, s: float) -> World:
        self.seen[rid] = T0 + int(s * 1000)
        return self

    def kinds(self) -> list[tuple[float, str]]:
        return [(t, m.get("kind") or f"incident_{m['type']}") for t, _, m in self.sent]


def test_a_silent_resource_raises_nodata_once_after_n_intervals_and_clears_when_data_returns() -> None:
    w = World(res("r1")).sample("r1", 10)
    for s in (20, 40, 54):
        w.at(s)
    assert w.sent == []  # 44 s after the last sample: still within 3 × 15 s
    w.at(55).at(56).at(120)
    assert w.kinds() == [(55.0, "nodata")]  # raised once, not on every round
    (_, topic, ev), = w.sent
    assert topic == TOPIC_EVENTS and ev["event_id"] == f"nodata:r1:{T0 + 10_000}"
    assert (ev["subject"], ev["resource_id"], ev["provider_id"], ev["unit_id"], ev["district_id"]) == (
        "r1", "r1", "p1", "u1", "d1")  # fmt: skip
    assert ev["data"]["since_ms"] == T0 + 10_000 and ev["data"]["reported"] is True and ev["data"]["silent_s"] == 45
    assert "name" not in ev["data"]  # no registered name: the alert summary falls back to the id
    w.sample("r1", 130).at(131)
    assert w.kinds()[-1] == (131.0, "nodata_cleared")
    cleared = w.sent[-1][2]
    assert cleared["event_id"] == f"nodata_cleared:r1:{T0 + 10_000}" and cleared["data"]["reason"] == "data_resumed"
    assert cleared["data"]["resumed_ms"] == T0 + 130_000 and "r1" not in w.tables["silence"]
    # silent again later: a new silence, new ids
    w.at(175).at(176)
    assert w.kinds()[-1] == (175.0, "nodata") and w.sent[-1][2]["event_id"] == f"nodata:r1:{T0 + 130_000}"


def test_a_fresh_resource_gets_n_intervals_of_grace_from_delivery() -> None:
    w = World(res("r1", delivered_ms=T0 + 100_000))
    w.at(50).at(144)  # not delivered yet, then within 45 s of delivery
    assert w.sent == []
    w.at(145)
    (_, _, ev), = w.sent
    assert ev["kind"] == "nodata" and ev["data"]["reported"] is False and ev["data"]["since_ms"] == T0 + 100_000


def test_not_in_service_never_raises_and_deregistration_clears() -> None:
    w = World(res("gone", deregistered_ms=T0 + 5_000), res("r2", deregistered_ms=T0 + 600_000))
    w.at(300)
    assert [m["resource_id"] for _, _, m in w.sent] == ["r2"]  # "gone" left service before it went silent
    w.at(601)  # r2 deregistered while silent: its nodata ends
    assert w.kinds()[-1] == (601.0, "nodata_cleared") and w.sent[-1][2]["data"]["reason"] == "out_of_service"
    w.at(900)
    assert len(w.sent) == 2


def test_startup_grace_holds_new_nodata_but_not_the_clearing() -> None:
    grace = Policy(intervals=3, incident_after_s=900, startup_grace_s=120)
    w = World(res("r1"), res("r2"), policy=grace, started_ms=T0).sample("r1", 0).sample("r2", 0)
    w.at(60).at(119)
    assert w.sent == []  # silent, but this worker started less than 120 s ago
    w.at(120)
    assert sorted(m["resource_id"] for _, _, m in w.sent) == ["r1", "r2"]
    w.started_ms = T0 + 200_000  # a new worker (restart): the stored silences stay, nothing is re-raised
    w.sample("r1", 201).at(201)
    assert w.kinds()[-1] == (201.0, "nodata_cleared") and len(w.sent) == 3


def test_a_long_silence_opens_one_auto_detected_incident_resolved_when_data_returns() -> None:
    w = World(res("r1")).sample("r1", 0)
    w.at(45).at(899).at(900).at(901).at(1000)
    assert w.kinds() == [(45.0, "nodata"), (900.0, "incident_opened")]
    _, topic, inc = w.sent[1]
    iid = f"auto-nodata-r1-{T0}"
    assert topic == TOPIC_INCIDENTS and inc["incident_id"] == iid and inc["event_id"] == f"{iid}:opened"
    assert (inc["severity"], inc["provider_id"], inc["resource_ids"], inc["drill"]) == ("P3", "p1", ["r1"], False)
    assert "自动检测" in inc["text"] and "Auto-detected" in inc["text"] and "15" in inc["text"]
    assert msgspec.json.decode(w.tables["silence"]["r1"], type=Silence).incident_id == iid
    w.sample("r1", 1200).at(1201)
    assert w.kinds()[-2:] == [(1201.0, "nodata_cleared"), (1201.0, "incident_resolved")]
    resolved = w.sent[-1][2]
    assert resolved["event_id"] == f"{iid}:resolved" and resolved["incident_id"] == iid
    assert w.sent[-2][2]["data"]["incident_id"] == iid


def test_an_incident_someone_already_resolved_is_not_resolved_again() -> None:
    w = World(res("r1")).sample("r1", 0).at(45).at(900)
    w.ended.add(f"auto-nodata-r1-{T0}")
    w.sample("r1", 1000).at(1000)
    assert [k for _, k in w.kinds()] == ["nodata", "incident_opened", "nodata_cleared"]


def test_a_worker_back_after_a_long_stop_raises_nodata_and_the_incident_together() -> None:
    w = World(res("r1")).sample("r1", 0)
    w.at(3600)
    assert w.kinds() == [(3600.0, "nodata"), (3600.0, "incident_opened")]
    # deterministic times: the moments the silence crossed each limit, not the late judgement
    assert event_decoder.decode(msgspec.json.encode(w.sent[0][2])).ts.timestamp() * 1000 == T0 + 45_000
    assert incident_decoder.decode(msgspec.json.encode(w.sent[1][2])).ts.timestamp() * 1000 == T0 + 900_000


def test_slow_interval_opens_the_incident_no_earlier_than_the_nodata() -> None:
    w = World(res("slow", interval_s=600)).sample("slow", 0)  # 3 × 600 s = 30 min > 15 min
    w.at(1799)
    assert w.sent == []
    w.at(1800)
    assert w.kinds() == [(1800.0, "nodata"), (1800.0, "incident_opened")]


def test_two_workers_judging_the_same_round_produce_identical_changes() -> None:
    a = World(res("r1")).sample("r1", 0)
    changes_a, _ = judge_silences(T0 + 60_000, T0, a.watched, a.seen, {}, POLICY)
    changes_b, _ = judge_silences(T0 + 61_000, T0 - 5_000, a.watched, a.seen, {}, POLICY)
    # same stored value, same message bytes: a compare-and-set lets exactly one of them through
    assert [(c.key, c.old, c.new, c.messages) for c in changes_a] == [(c.key, c.old, c.new, c.messages) for c in changes_b]


def _outage_kinds(w: World) -> list[tuple[float, str, Mapping[str, Any]]]:
    return [(t, m["kind"], m["data"]) for t, _, m in w.sent if m.get("kind", "").startswith("provider")]


def test_provider_outage_at_half_of_at_least_three_resources_and_recovery_below() -> None:
    w = World(res("a"), res("b"), res("c"), res("d"), res("x", provider="p2"), res("y", provider="p2"))
    for rid in "abcdxy":
        w.sample(rid, 0)
    for rid in "cd":
        w.sample(rid, 100)  # c, d keep reporting until 100 s
    w.at(45)  # a and b silent: 2 of 4 = 50 %; p2's two resources: all silent but fewer than 3 in service
    (t, kind, data), = _outage_kinds(w)
    assert (t, kind, data["silent"], data["in_service"], data["silent_pct"]) == (45.0, "provider_outage", 2, 4, 50.0)
    ev = next(m for _, _, m in w.sent if m["kind"] == "provider_outage")
    assert ev["provider_id"] == "p1" and ev["subject"] == "p1" and "resource_id" not in ev
    assert ev["event_id"] == f"provider_outage:p1:{T0 + 45_000}" and sorted(data["resources"]) == ["a", "b"]
    w.at(60).at(145)  # c, d silent too: still one outage
    assert len(_outage_kinds(w)) == 1
    for rid in "abc":
        w.sample(rid, 200)
    w.at(200)  # only d silent: 25 %
    assert [k for _, k, _ in _outage_kinds(w)] == ["provider_outage", "provider_recovered"]
    assert w.tables["outage"] == {}


@pytest.mark.parametrize(
    "pcts, states",
    [
        ([95, 89.9, 92, 94.9, 95, 80], [None, "low", None, None, "ok", "low"]),  # hysteresis 90 / 95
        ([90, 50, 100], [None, "low", "ok"]),
    ],
)
def test_telemetry_quality_low_and_ok_with_hysteresis(pcts: list[float], states: list[str | None]) -> None:
    stored: dict[str, bytes] = {}
    got = []
    for i, pct in enumerate(pcts):
        changes = judge_quality(T0 + i, (T0 - 3_600_000, T0), {"p1": (pct, 100.0)}, stored, POLICY)
        got.append(None)
        for c in changes:
            stored = {} if c.new is None else {"p1": c.new}
            (m,) = c.messages
            ev = event_decoder.decode(m.value)
            assert ev.kind == "telemetry_quality" and ev.provider_id == "p1" and ev.resource_id == ""
            assert ev.data["completeness_pct"] == pct and ev.data["threshold_pct"] == 90
            got[-1] = ev.data["state"]
    assert got == states


def test_window_completeness_caps_each_resource_and_counts_only_in_service_time() -> None:
    hour = 3_600_000
    watched = [
        res("full", interval_s=60),  # 60 expected
        res("double", interval_s=60),  # over-reports: counts 60 of its 120
        res("half", interval_s=60, delivered_ms=T0 + hour // 2),  # in service for the second half: 30
        res("late", interval_s=60, delivered_ms=T0 + hour),  # delivered at the window's end: nothing
        res("other", provider="p2", interval_s=30, deregistered_ms=T0 + hour // 4),  # 15 min: 30 expected
    ]
    got = window_completeness(watched, {"full": 30, "double": 120, "half": 30, "other": 30}, T0, T0 + hour)
    assert got == {"p1": (120.0, 150.0), "p2": (30.0, 30.0)}


def _doc_events(name: str) -> dict[str, Any]:
    text = (Path(__file__).resolve().parents[2] / "docs" / name).read_text(encoding="utf-8")
    blocks = re.findall(r"^```json events\.v1\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return {e.event_id: e for e in (event_decoder.decode(b.encode()) for b in blocks)}


def test_the_documented_examples_are_what_the_judgement_produces() -> None:
    documented = _doc_events("wire-formats.md")
    since = 1_795_485_600_000  # 2026-11-24 10:00:00 UTC+8
    r = Watched("r-00042", "p-haiyun", "u-ybj", "d-huancui", 15, since - 86_400_000)
    w = World(r, policy=Policy(intervals=3, incident_after_s=900, startup_grace_s=0), started_ms=0)
    w.seen["r-00042"] = since
    produced = []
    for t_ms, seen in ((since + 45_000, since), (since + 900_000, since), (since + 1_201_000, since + 1_200_000)):
        w.seen["r-00042"] = seen
        changes, _ = judge_silences(t_ms, 0, w.watched, w.seen, w.tables["silence"], w.policy)
        w.apply(changes, t_ms)
        produced += [event_decoder.decode(m.value) for c in changes for m in c.messages if m.topic == TOPIC_EVENTS]
    assert [e.kind for e in produced] == ["nodata", "nodata_cleared"]
    for e in produced:
        assert documented[e.event_id] == e
    (low,) = judge_quality(since + 130_000, (since - 3_600_000, since), {"p-haiyun": (19_008, 22_000)}, {},
                           Policy(low_pct=90, clear_pct=95))[0].messages  # fmt: skip
    assert documented["telemetry_quality:p-haiyun:low:1795485600000"] == event_decoder.decode(low.value)
    # every kind the monitor produces is documented in both places
    quality_doc = (Path(__file__).resolve().parents[2] / "docs" / "telemetry-quality.md").read_text(encoding="utf-8")
    for kind in ("nodata", "nodata_cleared", "provider_outage", "provider_recovered", "telemetry_quality"):
        assert f"| `{kind}` |" in quality_doc and f"`{kind}`" in "".join(
            (Path(__file__).resolve().parents[2] / "docs" / "wire-formats.md").read_text(encoding="utf-8"))


def test_settings_give_the_policy_and_refuse_a_bad_severity() -> None:
    from pydantic import ValidationError

    from opscenter.settings import Settings
    from streams.quality import policy_of

    p = policy_of(Settings())
    assert (p.intervals, p.incident_after_s, p.incident_severity, p.startup_grace_s, p.outage_pct,
            p.outage_min_resources, p.low_pct, p.clear_pct) == (3, 900.0, "P3", 300.0, 50.0, 3, 90.0, 95.0)  # fmt: skip
    assert policy_of(Settings(nodata_intervals=5, nodata_incident_severity="P2")).intervals == 5
    for bad in ({"nodata_incident_severity": "P5"}, {"nodata_intervals": 0}, {"nodata_outage_pct": 120}):
        with pytest.raises(ValidationError):
            Settings(**bad)  # type: ignore[arg-type]


def test_a_nodata_event_carries_the_resource_name_for_the_alert_summary() -> None:
    """The duty officer reads which system went silent, not only its id."""
    from alerts import engine
    from alerts.config import DEFAULT_PATH, load_config
    from alerts.engine import EngineState
    from alerts.model import from_event
    from opscenter.wire import event_decoder, json_encoder

    w = World(res("r1", name="市公安局-视频云-01")).sample("r1", 10)
    w.at(56)
    ((_, _, ev),) = w.sent
    assert ev["data"]["name"] == "市公安局-视频云-01"
    wire = event_decoder.decode(json_encoder.encode(ev))  # as the alert agent reads it from events.v1
    state, _ = engine.observe(EngineState(), from_event(wire), T0 + 56_000, load_config(DEFAULT_PATH))
    (alert,) = state.alerts.values()
    assert alert.summary_zh == "资源 市公安局-视频云-01 监控数据中断（已 45 秒无数据）"
    assert alert.labels["resource"] == "r1"
