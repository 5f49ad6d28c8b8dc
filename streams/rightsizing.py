"""Right-sizing (§31): when to propose a shrink or an expand, to what size, and the decision lifecycle (pure).

- **Shrink** a metric when its 7-day p95 (outside declared periods, §30) is below the low
  threshold, with data in at least ``min_coverage`` of the window's undeclared hours.
- **Expand** it when its hourly p95 is above the high threshold in each of the last
  ``expand_hours`` (3) whole hours, none of them overlapping a declared period.
- **Target**: the size that brings p95 to ``target_pct`` (60 %): ``ceil(size × p95 / target)``,
  in whole vCPUs, memory and storage in GB steps, at least one step; storage never below the
  space in use (the window's max).
- **Lifecycle**: proposed → approved | rejected (bureau; a rejection needs a reason) →
  applied (an ``adjusted`` lifecycle event of the resource after the approval). One open
  (proposed or approved) recommendation per resource and metric; after a rejection the
  same resource and metric is not proposed again for ``quiet_period_s``; evidence never
  reaches back before the resource's last adjustment (its spec was different then).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from opscenter.inventory import Resource
from streams.bands import METRICS, WindowFigures

HOUR_MS = 3_600_000
SIZE_FIELD = {"cpu": "vcpu", "memory": "mem_gb", "storage": "storage_gb"}
SIZE_UNIT = {"cpu": "vcpu", "memory": "gb", "storage": "gb"}
STATUSES = ("proposed", "approved", "rejected", "applied")
OPEN = frozenset({"proposed", "approved"})


@dataclass(frozen=True, slots=True)
class SizingPolicy:
    """Knobs of right-sizing (thresholds in percent)."""

    low_pct: float = 20.0
    high_pct: float = 80.0
    target_pct: float = 60.0
    expand_hours: int = 3
    shrink_window_s: int = 7 * 86_400
    min_coverage: float = 0.8  # share of the window's undeclared hours that must hold data
    mem_step_gb: int = 1
    storage_step_gb: int = 1
    quiet_period_s: int = 30 * 86_400  # after a rejection

    def __post_init__(self) -> None:
        if not 0 < self.low_pct < self.target_pct < self.high_pct <= 100:
            raise ValueError("need 0 < low < target < high <= 100")
        if self.expand_hours < 1 or self.mem_step_gb < 1 or self.storage_step_gb < 1:
            raise ValueError("expand_hours and GB steps must be >= 1")
        if not 0 < self.min_coverage <= 1:
            raise ValueError("min_coverage must be in (0, 1]")


def target_size(metric: str, current: int, p95_pct: float, policy: SizingPolicy, used_pct: float = 0.0) -> int:
    """The size (vCPU or GB) at which ``p95_pct`` of ``current`` would be ``target_pct``.

    ``used_pct`` (storage only): the share of storage in use; the target never goes below it.
    """
    need = current * p95_pct / policy.target_pct
    step = 1 if metric == "cpu" else policy.mem_step_gb if metric == "memory" else policy.storage_step_gb
    size = math.ceil(need / step - 1e-9) * step  # 1e-9: 4 × 45 / 60 is 3, not 3.0000000001
    if metric == "storage":
        size = max(size, math.ceil(current * used_pct / 100 / step - 1e-9) * step)
    return max(size, step)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A recommendation the evidence supports, before the open / quiet-period gate."""

    resource_id: str
    metric: str
    direction: str  # "shrink" or "expand"
    current_size: int
    target_size: int
    p95_pct: float
    evidence: dict[str, object]


def shrink_proposals(
    res: Resource, fig: WindowFigures, window_from_ms: int, window_to_ms: int, declared_hours: int,
    policy: SizingPolicy, spec_changed_ms: int | None = None,
) -> list[Proposal]:
    """Shrinks supported by ``fig``: the resource's window figures outside its declared hours.

    ``declared_hours``: how many of the window's hours were left out as declared;
    ``spec_changed_ms``: its last adjustment (no evidence reaches back before it).
    """  # fmt: skip
    if spec_changed_ms is not None and spec_changed_ms > window_from_ms:
        return []
    window_hours = math.ceil((window_to_ms - window_from_ms) / HOUR_MS)
    countable = window_hours - declared_hours
    if countable <= 0 or fig.buckets < policy.min_coverage * countable:
        return []
    out = []
    for metric in METRICS:
        p95 = fig.stat(metric, "p95")
        if not p95 < policy.low_pct:
            continue
        current = int(getattr(res, SIZE_FIELD[metric]))
        used = fig.stat(metric, "max") if metric == "storage" else 0.0
        target = target_size(metric, current, p95, policy, used)
        if current <= 0 or target >= current:
            continue
        evidence = {"rule": "window_p95_below_low", "window": fig.window, "from_ms": window_from_ms,
                    "to_ms": window_to_ms, "p95": round(p95, 3), "mean": round(fig.stat(metric, "mean"), 3),
                    "max": round(fig.stat(metric, "max"), 3), "hours_with_data": fig.buckets,
                    "declared_hours_excluded": declared_hours, "low_pct": policy.low_pct,
                    "target_pct": policy.target_pct}  # fmt: skip
        out.append(Proposal(res.resource_id, metric, "shrink", current, target, p95, evidence))
    return out


def expand_proposals(
    res: Resource, hourly: Mapping[int, Mapping[str, float]], declared: set[int], now_ms: int,
    policy: SizingPolicy, spec_changed_ms: int | None = None,
) -> list[Proposal]:
    """Expands supported by the hourly p95s (``hour_ms -> {"cpu": p95, …}``) of the last whole hours.

    The last ``expand_hours`` whole hours before ``now_ms`` must each hold data, overlap no
    declared hour (``declared``), start after the last adjustment, and be above the threshold.
    """  # fmt: skip
    this_hour = now_ms - now_ms % HOUR_MS
    hours = [this_hour - k * HOUR_MS for k in range(policy.expand_hours, 0, -1)]
    if spec_changed_ms is not None and spec_changed_ms > hours[0]:
        return []
    if any(h in declared or h not in hourly for h in hours):
        return []
    out = []
    for metric in METRICS:
        values = [float(hourly[h][metric]) for h in hours]
        if not all(v > policy.high_pct for v in values):
            continue
        current = int(getattr(res, SIZE_FIELD[metric]))
        p95 = max(values)  # size for the worst of the evidence hours
        target = target_size(metric, current, p95, policy)
        if target <= current:
            continue
        evidence = {"rule": "hourly_p95_above_high", "hours": [[h, round(v, 3)] for h, v in zip(hours, values)],
                    "high_pct": policy.high_pct, "target_pct": policy.target_pct}  # fmt: skip
        out.append(Proposal(res.resource_id, metric, "expand", current, target, p95, evidence))
    return out


# ------------------------------------------------------------------------------ lifecycle


class DecisionError(ValueError):
    """A decision that does not fit the recommendation; messages in Chinese and English."""

    def __init__(self, code: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.code, self.zh, self.en = code, zh, en


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A right-sizing recommendation in its current status."""

    rec_id: str
    resource_id: str
    provider_id: str
    unit_id: str
    district_id: str
    metric: str
    direction: str
    status: str
    current_size: int
    target_size: int
    size_unit: str
    p95_pct: float
    target_pct: float
    evidence: dict[str, object]
    proposed_at: datetime
    decided_at: datetime | None = None
    decided_by: str = ""
    reason: str = ""
    applied_at: datetime | None = None
    applied_event_id: str = ""
    extra: dict[str, object] = field(default_factory=dict)  # not stored: e.g. the adjusted spec

    @property
    def open(self) -> bool:
        return self.status in OPEN


def rec_id(resource_id: str, metric: str, direction: str, now_ms: int) -> str:
    """Stable id: a retried evaluation in the same hour proposes the same recommendation."""
    raw = f"{resource_id}|{metric}|{direction}|{now_ms - now_ms % HOUR_MS}"
    return "rs-" + hashlib.sha1(raw.encode()).hexdigest()[:20]


def propose(p: Proposal, res: Resource, now: datetime, policy: SizingPolicy) -> Recommendation:
    """A new ``proposed`` recommendation from a proposal."""
    now_ms = int(now.timestamp() * 1000)
    return Recommendation(
        rec_id(p.resource_id, p.metric, p.direction, now_ms), p.resource_id, res.provider_id, res.unit_id,
        res.district_id, p.metric, p.direction, "proposed", p.current_size, p.target_size, SIZE_UNIT[p.metric],
        p.p95_pct, policy.target_pct, p.evidence, now,
    )  # fmt: skip


def gate(
    proposals: Sequence[Proposal], existing: Sequence[Recommendation], now: datetime, policy: SizingPolicy
) -> list[Proposal]:
    """The proposals that may become recommendations now.

    Not when the resource and metric already has an open one, nor within the quiet period
    after a rejection of the same resource and metric.
    """
    blocked: set[tuple[str, str]] = set()
    for r in existing:
        if r.open:
            blocked.add((r.resource_id, r.metric))
        elif r.status == "rejected" and r.decided_at is not None:
            if (now - r.decided_at).total_seconds() < policy.quiet_period_s:
                blocked.add((r.resource_id, r.metric))
    out, seen = [], set()
    for p in proposals:
        key = (p.resource_id, p.metric)
        if key in blocked or key in seen:
            continue
        seen.add(key)
        out.append(p)
    return out


def approve(rec: Recommendation, actor: str, now: datetime, reason: str = "") -> Recommendation:
    """proposed → approved, by ``actor``."""
    _need(rec, "proposed", "approve")
    if not actor:
        raise DecisionError("actor_required", "缺少审批人", "who approves is required")
    return replace(rec, status="approved", decided_at=now, decided_by=actor, reason=reason.strip())


def reject(rec: Recommendation, actor: str, reason: str, now: datetime) -> Recommendation:
    """proposed → rejected, by ``actor``, with a reason (required)."""
    _need(rec, "proposed", "reject")
    if not actor:
        raise DecisionError("actor_required", "缺少审批人", "who rejects is required")
    if not reason or not reason.strip():
        raise DecisionError("reason_required", "驳回须填写理由", "a rejection needs a reason")
    return replace(rec, status="rejected", decided_at=now, decided_by=actor, reason=reason.strip())


def mark_applied(rec: Recommendation, event_id: str, event_ts: datetime, spec: Mapping[str, object]) -> Recommendation:
    """approved → applied by the provider's adjustment ``event_id`` at ``event_ts`` (after the approval)."""
    _need(rec, "approved", "apply")
    assert rec.decided_at is not None
    if event_ts < rec.decided_at:
        raise DecisionError("adjusted_before_approval", "调整早于审批", "the adjustment predates the approval")
    return replace(rec, status="applied", applied_at=event_ts, applied_event_id=event_id, extra={"spec": dict(spec)})


def _need(rec: Recommendation, status: str, action: str) -> None:
    if rec.status != status:
        raise DecisionError("invalid_status", f"当前状态为 {rec.status}，不能执行该操作",
                            f"cannot {action} a recommendation that is {rec.status}")  # fmt: skip
