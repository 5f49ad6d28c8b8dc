"""The unit-level arithmetic of the annual evaluation (§32), the period cut at today, and the CLI's report verbs."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from opscenter import evaluation, fees
from opscenter.cli import build_parser


def row(rid: str, vcpu: int, mem: int, storage: int, days: int, mean: float | None, p95: float | None,
        **extra: Any) -> dict[str, Any]:  # fmt: skip
    base = {"resource_id": rid, "vcpu": vcpu, "mem_gb": mem, "storage_gb": storage, "days_measured": days,
            "cpu_mean": mean, "cpu_p95": p95, "mem_mean": mean, "mem_p95": p95, "storage_mean": mean,
            "storage_p95": p95, "state": "delivered", "in_service_at_end": 1, "delivered_in_period": 0,
            "deregistered_in_period": 0, "days_in_service": days, "days_low": 0, "days_normal": days, "days_high": 0,
            "band": "normal"}  # fmt: skip
    return {**base, **extra}


def test_weighting_is_capacity_times_measured_days() -> None:
    rows = [row("a", 4, 8, 100, 10, 50.0, 80.0), row("b", 1, 8, 0, 30, 10.0, 20.0), row("c", 8, 8, 8, 0, None, None)]
    u = evaluation.weighted_utilization(rows)
    # cpu: weights 40 and 30 → mean (40 × 50 + 30 × 10) / 70 = 32.86, p95 (3200 + 600) / 70 = 54.29
    assert u["cpu"] == {"mean_pct": 32.86, "p95_pct": 54.29}
    # memory: weights 80 and 240 → (4000 + 2400) / 320 = 20, (6400 + 4800) / 320 = 35
    assert u["memory"] == {"mean_pct": 20.0, "p95_pct": 35.0}
    # storage: b has no storage, c no telemetry: a alone
    assert u["storage"] == {"mean_pct": 50.0, "p95_pct": 80.0}
    assert evaluation.weighted_utilization([row("c", 8, 8, 8, 0, None, None)])["cpu"] == {"mean_pct": None,
                                                                                         "p95_pct": None}


def test_summary_counts_states_incidents_and_capacity_at_the_end() -> None:
    rows = [row("a", 4, 8, 100, 10, 50.0, 80.0, delivered_in_period=1),
            row("b", 2, 4, 50, 5, 5.0, 10.0, band="low", days_low=5, days_normal=0),
            row("c", 8, 16, 500, 3, 90.0, 95.0, state="deregistered", in_service_at_end=0, deregistered_in_period=1,
                band="high", days_high=3, days_normal=0),
            row("d", 1, 1, 10, 0, None, None, state="applied", in_service_at_end=0)]  # fmt: skip
    incidents = [{"severity": s, "opened": n, "drills": 1, "response_breaches": 1, "restore_breaches": 0,
                  "open_now": n} for s, n in (("P1", 2), ("P2", 1), ("P3", 0), ("P4", 0))]  # fmt: skip
    s = evaluation.summary(rows, incidents, [{"rec_id": "r"}])
    assert (s["resources"], s["in_service_at_end"], s["vcpu"], s["mem_gb"], s["storage_gb"]) == (4, 2, 6, 12, 150)
    assert (s["delivered_in_period"], s["deregistered_in_period"], s["resource_days"]) == (1, 1, 18)
    assert (s["days_low"], s["days_normal"], s["days_high"], s["downsizing_candidates"]) == (5, 10, 3, 1)
    assert (s["incidents"], s["drills"], s["breaches"], s["open_p1"], s["open_p2"]) == (3, 4, 4, 2, 1)
    assert s["recommendations_open"] == 1
    assert [(x["state"], x["resources"]) for x in evaluation.states(rows)] == [
        ("applied", 1), ("delivered", 2), ("deregistered", 1)]  # fmt: skip


@pytest.mark.parametrize(
    "first, last, today, expected",
    [
        (date(2025, 1, 1), date(2025, 12, 31), date(2026, 3, 1), date(2025, 12, 31)),  # over: all of it
        (date(2026, 1, 1), date(2026, 12, 31), date(2026, 3, 1), date(2026, 3, 1)),  # to date
        (date(2026, 3, 1), date(2026, 3, 31), date(2026, 3, 1), date(2026, 3, 1)),  # its first day
        (date(2026, 4, 1), date(2026, 4, 30), date(2026, 3, 1), None),  # not begun
    ],
)
def test_effective_end_of_a_period(first: date, last: date, today: date, expected: date | None) -> None:
    assert fees.effective_to(first, last, today) == expected


def test_report_verbs_of_the_cli() -> None:
    p = build_parser()
    a = p.parse_args(["report", "unit", "2025", "--unit", "u1", "--unit", "u2", "--format", "xlsx"])
    assert (a.kind, a.period, a.unit, a.format, a.provider) == ("unit", "2025", ["u1", "u2"], ["xlsx"], None)
    b = p.parse_args(["report", "annual", "2025", "--provider", "p1"])
    assert (b.kind, b.provider, b.unit) == ("annual", ["p1"], None)
    with pytest.raises(SystemExit):
        p.parse_args(["report", "weekly", "2025"])
