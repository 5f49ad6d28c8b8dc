"""Annual evaluation of a government unit (§32): the unit-level figures from per-resource rows; pure.

Systems on cloud (上云情况), utilization (云资源使用情况) and security status (安全状况) are summed
here from the rows of ``sql/reports/report_unit_*.sql``. docs/reports.md has the rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

#: metric → (column prefix in the rows, capacity column that weights it)
METRICS = {"cpu": ("cpu", "vcpu"), "memory": ("mem", "mem_gb"), "storage": ("storage", "storage_gb")}
STATE_ZH = {
    "applied": "已申请", "accepted": "已受理", "refused": "未受理", "baseline_passed": "基线检查通过",
    "baseline_failed": "基线检查未通过", "delivered": "已交付", "acceptance_passed": "已验收", "adjusted": "已变更",
    "deregistration_requested": "申请注销", "deregistered": "已注销",
}  # fmt: skip


def weighted_utilization(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Capacity-weighted mean and p95 per metric over the period.

    A resource's weight for a metric is its capacity (vCPU, GB memory, GB storage) × its days with
    telemetry, so the mean is the share of the unit's capacity in use over its measured
    resource-days, and the p95 the same weighting of the resources' own p95 (not a percentile of
    the pool, as in streams/bands.py). Resources without telemetry or capacity do not count.
    """
    out: dict[str, dict[str, float | None]] = {}
    rows = list(rows)
    for metric, (prefix, cap) in METRICS.items():
        weight = mean = p95 = 0.0
        for r in rows:
            w = float(r[cap] or 0) * float(r["days_measured"] or 0)
            if w <= 0 or r[f"{prefix}_mean"] is None or r[f"{prefix}_p95"] is None:
                continue
            weight += w
            mean += w * float(r[f"{prefix}_mean"])
            p95 += w * float(r[f"{prefix}_p95"])
        out[metric] = {"mean_pct": round(mean / weight, 2) if weight else None,
                       "p95_pct": round(p95 / weight, 2) if weight else None}  # fmt: skip
    return out


def states(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Resources per state at the end of the period, in lifecycle order."""
    n = Counter(r["state"] for r in rows)
    return [{"state": s, "state_zh": zh, "resources": n[s]} for s, zh in STATE_ZH.items() if n[s]]


def summary(resources: list[Mapping[str, Any]], incidents: list[Mapping[str, Any]],
            recommendations: list[Mapping[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """The flat summary of the evaluation (every value a number, or None where nothing was measured)."""
    live = [r for r in resources if r["in_service_at_end"]]
    util = weighted_utilization(resources)
    by_sev = {i["severity"]: i for i in incidents}
    doc: dict[str, Any] = {
        "resources": len(resources),
        "in_service_at_end": len(live),
        "delivered_in_period": sum(int(r["delivered_in_period"]) for r in resources),
        "deregistered_in_period": sum(int(r["deregistered_in_period"]) for r in resources),
        "vcpu": sum(int(r["vcpu"]) for r in live),
        "mem_gb": sum(int(r["mem_gb"]) for r in live),
        "storage_gb": sum(int(r["storage_gb"]) for r in live),
        "resource_days": sum(int(r["days_in_service"]) for r in resources),
    }
    for metric, figs in util.items():
        doc[f"{metric}_mean_pct"], doc[f"{metric}_p95_pct"] = figs["mean_pct"], figs["p95_pct"]
    doc.update(
        days_low=sum(int(r["days_low"]) for r in resources),
        days_normal=sum(int(r["days_normal"]) for r in resources),
        days_high=sum(int(r["days_high"]) for r in resources),
        downsizing_candidates=sum(r["band"] == "low" for r in resources),
        incidents=sum(int(i["opened"]) for i in incidents),
        drills=sum(int(i["drills"]) for i in incidents),
        breaches=sum(int(i["response_breaches"]) + int(i["restore_breaches"]) for i in incidents),
        open_p1=int(by_sev["P1"]["open_now"]) if "P1" in by_sev else 0,
        open_p2=int(by_sev["P2"]["open_now"]) if "P2" in by_sev else 0,
        recommendations_open=len(recommendations),
    )
    return doc
