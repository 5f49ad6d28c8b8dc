"""Pure parts of the wall's slow panels: Asia/Shanghai periods, SLA gauges, pipeline status."""

from __future__ import annotations

from datetime import datetime

import pytest

from dashboard.panels import LAG_WARN_S, day_start_ms, month_bounds_ms, pipeline_status, sla_gauges
from opscenter.workdays import SHANGHAI


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=SHANGHAI).timestamp() * 1000)


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        ((2026, 3, 15, 12, 0), (2026, 3, 1), (2026, 4, 1)),
        ((2026, 12, 31, 23, 59), (2026, 12, 1), (2027, 1, 1)),  # the year turns
        ((2026, 4, 1, 0, 30), (2026, 4, 1), (2026, 5, 1)),  # 16:30 UTC on 31 March: April in Weihai
    ],
)
def test_month_bounds_are_calendar_months_in_shanghai(now: tuple, start: tuple, end: tuple) -> None:
    assert month_bounds_ms(ms(*now)) == (ms(*start), ms(*end))


def test_today_starts_at_midnight_in_shanghai() -> None:
    assert day_start_ms(ms(2026, 3, 15, 0, 10)) == ms(2026, 3, 15)
    assert day_start_ms(ms(2026, 3, 15, 23, 59)) == ms(2026, 3, 15)


def test_sla_gauges_sum_severities_and_share_only_decided_clocks() -> None:
    rows = [
        {"provider_id": "p1", "incidents": 3, "drills": 1, "response_decided": 3, "response_within": 3,
         "restore_decided": 1, "restore_within": 0},
        {"provider_id": "p1", "incidents": 1, "drills": 0, "response_decided": 1, "response_within": 0,
         "restore_decided": 0, "restore_within": 0},
        {"provider_id": "p2", "incidents": 2, "drills": 0, "response_decided": 0, "response_within": 0,
         "restore_decided": 0, "restore_within": 0},
    ]  # fmt: skip
    g = sla_gauges(rows, {"p1": 2, "p3": 1})
    assert g["p1"]["response_share"] == 0.75 and g["p1"]["restore_share"] == 0.0
    assert (g["p1"]["incidents"], g["p1"]["drills"], g["p1"]["breaches_today"]) == (4, 1, 2)
    assert g["p2"]["response_share"] is None and g["p2"]["restore_share"] is None  # nothing decided yet
    assert g["p3"]["breaches_today"] == 1 and g["p3"]["incidents"] == 0  # breached, opened last month


def test_pipeline_status_names_what_is_down_before_any_lag() -> None:
    up = {"broker": True, "redis": True, "clickhouse": True}
    assert pipeline_status(up, 3) == ("ok", [])
    assert pipeline_status(up, None) == ("ok", [])  # nothing stored yet: nothing to be behind
    assert pipeline_status(up, LAG_WARN_S + 1) == ("warn", ["lag"])
    assert pipeline_status({**up, "clickhouse": False, "broker": False}, 999) == ("down", ["broker", "clickhouse"])
