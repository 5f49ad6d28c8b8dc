"""Fault rate, availability and satisfaction arithmetic (streams/sla_figures.py), without services."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from opscenter.workdays import SHANGHAI
from streams.sla_figures import (
    ProviderData,
    Quality,
    Step,
    day_start_ms,
    merge,
    month_bounds,
    period_start,
    periods,
)

MIN = 60_000
H = 60 * MIN
DAY = 24 * H


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).timestamp() * 1000)


def test_step_integrates_overlapping_intervals_over_any_range() -> None:
    s = Step([(0, 10), (5, 20), (30, 30)])  # an empty interval counts for nothing
    assert s.integral(0, 20) == 25  # 10 + 15
    assert s.integral(5, 10) == 10  # two intervals at once
    assert s.integral(-100, 100) == 25 and s.integral(20, 30) == 0 and s.integral(9, 8) == 0


def test_merge_unions_touching_and_overlapping_intervals() -> None:
    assert merge([(30, 40), (0, 10), (5, 20), (40, 50), (60, 60)]) == [(0, 20), (30, 50)]


@pytest.mark.parametrize(
    "group_by, day, start",
    [("day", date(2026, 11, 7), date(2026, 11, 7)), ("month", date(2026, 11, 7), date(2026, 11, 1)),
     ("quarter", date(2026, 11, 7), date(2026, 10, 1)), ("quarter", date(2026, 3, 31), date(2026, 1, 1)),
     ("year", date(2026, 11, 7), date(2026, 1, 1))],
)  # fmt: skip
def test_period_start(group_by: str, day: date, start: date) -> None:
    assert period_start(day, group_by) == start


def test_periods_are_shanghai_days_clipped_to_the_range() -> None:
    got = periods(date(2026, 10, 15), date(2027, 1, 1), "quarter")
    assert [(p.label, p.lo_ms, p.hi_ms) for p in got] == [(date(2026, 10, 1), at(10, 15), day_start_ms(date(2027, 1, 1)))]
    months = periods(date(2026, 10, 15), date(2026, 12, 2), "month")
    assert [p.label.isoformat() for p in months] == ["2026-10-01", "2026-11-01", "2026-12-01"]
    assert months[0].lo_ms == at(10, 15) and months[-1].hi_ms == at(12, 2)
    assert day_start_ms(date(2026, 10, 1)) == 1_790_784_000_000  # 2026-09-30T16:00:00Z
    with pytest.raises(ValueError):
        periods(date(2026, 1, 1), date(2026, 2, 1), "week")


def test_month_bounds_have_the_lengths_of_the_months() -> None:
    got = month_bounds(at(10, 20), at(11, 3))
    assert [length // DAY for _, _, length in got] == [31, 30]


def data(**kw: object) -> ProviderData:
    return ProviderData(**kw)  # type: ignore[arg-type]


def test_resource_delivered_mid_month_counts_partially() -> None:
    # r1 the whole of November (30 days), r2 from 16 Nov 00:00 (15 days): 45/30 resource-months
    d = data(in_service=[("r1", at(9, 1), None), ("r2", at(11, 16), None)],
             incidents=[("i1", "P3", False, at(11, 5), None, None), ("i2", "P1", True, at(11, 6), None, None)])  # fmt: skip
    f = Quality(d, as_of_ms=at(12, 10)).figures(at(11, 1), at(12, 1))
    assert f["resource_months"] == 1.5 and f["incidents"] == 1 and f["drill_incidents"] == ["i2"]
    assert f["fault_rate"] == pytest.approx(66.6667)  # 1 × 100 / 1.5
    assert f["availability_pct"] == 100.0 and f["in_service_min"] == 45 * 1440


def test_periods_spanning_months_add_each_months_share() -> None:
    # one resource from 16 Oct (16 of 31 days) to 16 Nov (15 of 30 days): 16/31 + 15/30 resource-months
    d = data(in_service=[("r1", at(10, 16), at(11, 16))])
    f = Quality(d, as_of_ms=at(12, 31)).figures(at(10, 1), at(12, 1))
    assert f["resource_months"] == round(16 / 31 + 15 / 30, 4)
    assert f["fault_rate"] == 0.0


def test_availability_unions_overlaps_and_stops_at_deregistration_and_as_of() -> None:
    d = data(
        in_service=[("r1", at(9, 1), None), ("r2", at(9, 1), at(11, 2)), ("r3", at(9, 1), None)],
        down=[
            ("i1", "r1", at(11, 5, 10), at(11, 5, 12)),  # 10:00–12:00
            ("i2", "r1", at(11, 5, 11), at(11, 5, 14)),  # overlaps: r1 down 10:00–14:00 = 240 min
            ("i3", "r2", at(11, 1, 23), at(11, 2, 3)),  # r2 deregistered at 00:00: 60 min
            ("i4", "r3", at(11, 30, 20), None),  # unresolved: to as_of (22:00) = 120 min
            ("i5", "r9", at(11, 3), at(11, 4)),  # a resource not in service: no time to lose
        ],
    )  # fmt: skip
    q = Quality(d, as_of_ms=at(11, 30, 22))
    f = q.figures(at(11, 1), at(12, 1))
    in_service_min = (29 * 1440 + 22 * 60) * 2 + 1 * 1440  # r1, r3 to as_of; r2 1 day
    assert f["in_service_min"] == in_service_min and f["down_min"] == 240 + 60 + 120
    assert f["availability_pct"] == round(100 * (1 - 420 / in_service_min), 4)
    # a period after as_of has no in-service time: no figures
    later = q.figures(at(12, 1), at(12, 2))
    assert (later["availability_pct"], later["fault_rate"], later["resource_months"]) == (None, None, 0.0)


def test_mtta_mttr_and_satisfaction_of_a_period() -> None:
    d = data(
        incidents=[("a", "P1", False, at(11, 2), at(11, 2, 0, 10), at(11, 2, 2)),
                   ("b", "P2", False, at(11, 3), at(11, 3, 0, 20), None),
                   ("c", "P1", True, at(11, 4), at(11, 4, 0, 1), at(11, 4, 0, 2))],
        ratings=[(date(2026, 11, 1), 7, 2), (date(2026, 11, 2), 5, 1), (date(2026, 12, 1), 1, 1)],
    )  # fmt: skip
    f = Quality(d, as_of_ms=at(12, 5)).figures(at(11, 1), at(12, 1))
    assert (f["mtta_s"], f["mttr_s"]) == (900.0, 7200.0)  # (10 + 20) / 2 min; 2 h (b not restored)
    assert f["satisfaction"] == {"mean": 4.0, "count": 3}  # (7 + 5) / 3; December's rating is not November's
    assert f["availability_pct"] is None and f["fault_rate"] is None  # no resources in service
