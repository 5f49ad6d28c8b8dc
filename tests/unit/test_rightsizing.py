"""Right-sizing: target sizes, shrink / expand evidence, the one-open and quiet-period gate, the decision lifecycle."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from opscenter.inventory import Resource
from streams.bands import WindowFigures
from streams.rightsizing import (
    DecisionError, Proposal, Recommendation, SizingPolicy, approve, expand_proposals, gate, mark_applied,
    propose, rec_id, reject, shrink_proposals, target_size,
)  # fmt: skip

POLICY = SizingPolicy()
H = 3_600_000
NOW = datetime(2026, 3, 9, 10, 35, tzinfo=timezone.utc)
NOW_MS = int(NOW.timestamp() * 1000)
WEEK_FROM = NOW_MS - 7 * 24 * H
RES = Resource("r1", "p1", "u1", "d1", "db", 4, 16, 1000, "delivered", 15, NOW - timedelta(days=30))


@pytest.mark.parametrize(
    ("metric", "current", "p95", "policy", "used", "target"),
    [
        ("cpu", 4, 9.7, POLICY, 0, 1),  # 4 × 9.7 / 60 = 0.65 → 1 (whole vCPUs)
        ("cpu", 8, 15.0, POLICY, 0, 2),  # exactly 2.0 → 2, not 3
        ("cpu", 4, 97.0, POLICY, 0, 7),  # 6.47 → 7
        ("cpu", 2, 0.0, POLICY, 0, 1),  # never below one vCPU
        ("memory", 16, 13.0, POLICY, 0, 4),  # 3.47 → 4 GB
        ("memory", 64, 13.0, SizingPolicy(mem_step_gb=4), 0, 16),  # 13.87 → 4 steps of 4 GB
        ("memory", 8, 1.0, SizingPolicy(mem_step_gb=2), 0, 2),  # at least one step
        ("memory", 32, 90.0, POLICY, 0, 48),  # expand: 48.0 → 48
        ("storage", 1000, 12.0, POLICY, 19.0, 200),  # 200 GB; in use 190 GB
        ("storage", 1000, 5.0, POLICY, 50.0, 500),  # 84 GB would not hold the 500 GB in use
        ("storage", 1000, 5.0, SizingPolicy(storage_step_gb=100), 0, 100),
    ],
)  # fmt: skip
def test_target_size(metric: str, current: int, p95: float, policy: SizingPolicy, used: float, target: int) -> None:
    assert target_size(metric, current, p95, policy, used) == target


def week(cpu_p95: float, mem_p95: float, sto_p95: float, buckets: int = 168, sto_max: float = 60.0) -> WindowFigures:
    return WindowFigures("r1", "7d", buckets * 240, buckets, 5.0, 14.0, cpu_p95, 8.0, 15.0, mem_p95, 50.0,
                         sto_max, sto_p95)  # fmt: skip


def test_shrink_idle_cpu_and_memory_not_normal_storage() -> None:
    props = shrink_proposals(RES, week(9.7, 13.0, 55.0), WEEK_FROM, NOW_MS, 0, POLICY)
    assert [(p.metric, p.direction, p.current_size, p.target_size) for p in props] == [
        ("cpu", "shrink", 4, 1), ("memory", "shrink", 16, 4)]  # fmt: skip
    ev = props[0].evidence
    assert (ev["window"], ev["p95"], ev["from_ms"], ev["to_ms"], ev["hours_with_data"]) == (
        "7d", 9.7, WEEK_FROM, NOW_MS, 168)  # fmt: skip


def test_shrink_storage_keeps_the_space_in_use() -> None:
    props = shrink_proposals(RES, week(50.0, 50.0, 12.0, sto_max=19.0), WEEK_FROM, NOW_MS, 0, POLICY)
    assert [(p.metric, p.target_size) for p in props] == [("storage", 200)]


def test_shrink_needs_p95_strictly_below_low_and_a_smaller_size() -> None:
    assert shrink_proposals(RES, week(20.0, 50.0, 50.0), WEEK_FROM, NOW_MS, 0, POLICY) == []
    one = replace(RES, vcpu=1)
    assert [p.metric for p in shrink_proposals(one, week(10.0, 50.0, 50.0), WEEK_FROM, NOW_MS, 0, POLICY)] == []


def test_shrink_needs_coverage_of_the_undeclared_hours() -> None:
    # 168 hours in the window; 80 % coverage = 134.4 hours
    assert shrink_proposals(RES, week(9.7, 50, 50, buckets=134), WEEK_FROM, NOW_MS, 0, POLICY) == []
    assert len(shrink_proposals(RES, week(9.7, 50, 50, buckets=135), WEEK_FROM, NOW_MS, 0, POLICY)) == 1
    # 48 declared hours left out: 120 countable, 96 needed
    assert len(shrink_proposals(RES, week(9.7, 50, 50, buckets=96), WEEK_FROM, NOW_MS, 48, POLICY)) == 1
    assert shrink_proposals(RES, week(9.7, 50, 50, buckets=95), WEEK_FROM, NOW_MS, 48, POLICY) == []
    assert shrink_proposals(RES, week(9.7, 50, 50, buckets=0), WEEK_FROM, NOW_MS, 168, POLICY) == []


def test_no_shrink_evidence_from_before_the_last_adjustment() -> None:
    assert shrink_proposals(RES, week(9.7, 50, 50), WEEK_FROM, NOW_MS, 0, POLICY, WEEK_FROM + H) == []
    assert len(shrink_proposals(RES, week(9.7, 50, 50), WEEK_FROM, NOW_MS, 0, POLICY, WEEK_FROM - H)) == 1


THIS_HOUR = NOW_MS - NOW_MS % H  # 10:00; evidence hours 07:00, 08:00, 09:00
HOURS = [THIS_HOUR - 3 * H, THIS_HOUR - 2 * H, THIS_HOUR - H]


def hourly(cpu: list[float], mem: float = 50.0) -> dict[int, dict[str, float]]:
    return {h: {"cpu": c, "memory": mem, "storage": 40.0} for h, c in zip(HOURS, cpu)}


def test_expand_after_three_hours_above_high() -> None:
    props = expand_proposals(RES, hourly([85.0, 97.0, 90.0]), set(), NOW_MS, POLICY)
    assert [(p.metric, p.direction, p.current_size, p.target_size, p.p95_pct) for p in props] == [
        ("cpu", "expand", 4, 7, 97.0)]  # sized for the worst hour: 4 × 97 / 60 = 6.47 → 7  # fmt: skip
    assert props[0].evidence["hours"] == [[HOURS[0], 85.0], [HOURS[1], 97.0], [HOURS[2], 90.0]]


@pytest.mark.parametrize("cpu", [[85.0, 80.0, 90.0], [79.9, 97.0, 97.0], [85.0, 97.0, 79.0]])
def test_no_expand_unless_every_hour_is_above_high(cpu: list[float]) -> None:
    assert expand_proposals(RES, hourly(cpu), set(), NOW_MS, POLICY) == []


def test_no_expand_with_a_missing_or_declared_hour_or_a_recent_adjustment() -> None:
    gap = hourly([85.0, 97.0, 90.0])
    del gap[HOURS[1]]
    assert expand_proposals(RES, gap, set(), NOW_MS, POLICY) == []
    assert expand_proposals(RES, hourly([85.0, 97.0, 90.0]), {HOURS[2]}, NOW_MS, POLICY) == []
    assert expand_proposals(RES, hourly([85.0, 97.0, 90.0]), {HOURS[0] - H}, NOW_MS, POLICY) != []
    assert expand_proposals(RES, hourly([85.0, 97.0, 90.0]), set(), NOW_MS, POLICY, HOURS[0] + 1) == []
    # the current, incomplete hour is no evidence: the same data one hour later lacks its 3rd hour
    assert expand_proposals(RES, hourly([85.0, 97.0, 90.0]), set(), NOW_MS + H, POLICY) == []


def test_expand_hours_is_configurable() -> None:
    two = SizingPolicy(expand_hours=2)
    assert len(expand_proposals(RES, hourly([50.0, 97.0, 90.0]), set(), NOW_MS, two)) == 1


def _rec(status: str, metric: str = "cpu", decided_days_ago: float | None = None) -> Recommendation:
    decided = NOW - timedelta(days=decided_days_ago) if decided_days_ago is not None else None
    return Recommendation("x", "r1", "p1", "u1", "d1", metric, "shrink", status, 4, 1, "vcpu", 9.7, 60.0, {},
                          NOW - timedelta(days=40), decided, "officer", "")  # fmt: skip


def _prop(metric: str = "cpu", rid: str = "r1") -> Proposal:
    return Proposal(rid, metric, "shrink", 4, 1, 9.7, {})


def test_gate_one_open_per_resource_and_metric_and_quiet_period() -> None:
    props = [_prop("cpu"), _prop("memory"), _prop("cpu", "r2"), _prop("cpu", "r2")]
    assert [(p.resource_id, p.metric) for p in gate(props, [_rec("proposed")], NOW, POLICY)] == [
        ("r1", "memory"), ("r2", "cpu")]  # fmt: skip
    assert len(gate(props, [_rec("approved")], NOW, POLICY)) == 2
    assert len(gate(props, [_rec("rejected", decided_days_ago=29.9)], NOW, POLICY)) == 2  # quiet 30 days
    assert len(gate(props, [_rec("rejected", decided_days_ago=30.1)], NOW, POLICY)) == 3
    assert len(gate(props, [_rec("applied", decided_days_ago=1)], NOW, POLICY)) == 3
    assert len(gate(props, [_rec("rejected", decided_days_ago=2)], NOW, SizingPolicy(quiet_period_s=86_400))) == 3


def test_lifecycle_proposed_approved_applied_with_who_and_when() -> None:
    rec = propose(_prop(), RES, NOW, POLICY)
    assert (rec.status, rec.size_unit, rec.target_pct) == ("proposed", "vcpu", 60.0)
    assert rec.rec_id == rec_id("r1", "cpu", "shrink", NOW_MS)
    t1 = NOW + timedelta(hours=2)
    ok = approve(rec, "officer-li", t1)
    assert (ok.status, ok.decided_by, ok.decided_at) == ("approved", "officer-li", t1)
    with pytest.raises(DecisionError, match="cannot approve"):
        approve(ok, "officer-li", t1)
    with pytest.raises(DecisionError) as exc:
        mark_applied(ok, "ev-1", t1 - timedelta(seconds=1), {"vcpu": 1})
    assert exc.value.code == "adjusted_before_approval"
    done = mark_applied(ok, "ev-1", t1 + timedelta(hours=1), {"vcpu": 1, "mem_gb": 16, "storage_gb": 1000})
    assert (done.status, done.applied_event_id, done.applied_at, done.decided_by) == (
        "applied", "ev-1", t1 + timedelta(hours=1), "officer-li")  # fmt: skip
    with pytest.raises(DecisionError):
        reject(done, "officer-li", "too late", t1)


def test_reject_needs_a_reason_and_only_proposed_can_be_decided() -> None:
    rec = propose(_prop(), RES, NOW, POLICY)
    for reason in ("", "   "):
        with pytest.raises(DecisionError) as exc:
            reject(rec, "officer-li", reason, NOW)
        assert exc.value.code == "reason_required" and exc.value.zh
    no = reject(rec, "officer-li", " 业务即将上线 ", NOW)
    assert (no.status, no.reason, no.decided_by) == ("rejected", "业务即将上线", "officer-li")
    with pytest.raises(DecisionError):
        approve(no, "officer-li", NOW)
    with pytest.raises(DecisionError):
        mark_applied(rec, "ev-1", NOW, {})  # proposed, never approved


def test_rec_id_is_stable_within_the_hour() -> None:
    assert rec_id("r1", "cpu", "shrink", THIS_HOUR + 1) == rec_id("r1", "cpu", "shrink", THIS_HOUR + H - 1)
    assert rec_id("r1", "cpu", "shrink", THIS_HOUR) != rec_id("r1", "cpu", "shrink", THIS_HOUR + H)
    assert rec_id("r1", "cpu", "shrink", THIS_HOUR) != rec_id("r1", "memory", "shrink", THIS_HOUR)


@pytest.mark.parametrize("kw", [{"low_pct": 60}, {"target_pct": 85}, {"expand_hours": 0}, {"mem_step_gb": 0},
                                {"min_coverage": 0}])  # fmt: skip
def test_bad_policies_are_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        SizingPolicy(**kw)
