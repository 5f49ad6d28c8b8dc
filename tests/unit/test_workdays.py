"""The working-day calendar across the 2026 National Day holiday, and the override data file.

The official 2026 schedule (国务院办公厅关于2026年部分节假日安排的通知): 中秋节 9月25日（周五）至
27日（周日）放假; 国庆节 10月1日（周四）至7日（周三）放假调休，共7天；9月20日（周日）、10月10日
（周六）上班。
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from opscenter.datafile import DataFileError
from opscenter.workdays import (
    DEFAULT_OVERRIDE_FILE,
    SHANGHAI,
    UnknownYearError,
    WorkdayCalendar,
    add_working_days,
    decision_deadline,
    load_calendar,
)

CAL = load_calendar()
NATIONAL_DAY = [date(2026, 10, d) for d in range(1, 8)]
MID_AUTUMN = [date(2026, 9, d) for d in (25, 26, 27)]
MAKE_UP = [date(2026, 9, 20), date(2026, 10, 10)]  # a Sunday and a Saturday


def test_the_package_agrees_with_the_official_2026_autumn_schedule() -> None:
    days = [date(2026, 9, 14) + timedelta(days=i) for i in range(35)]  # 14 Sep – 18 Oct
    off = set(NATIONAL_DAY + MID_AUTUMN)
    for d in days:
        expected = d in MAKE_UP or (d.weekday() < 5 and d not in off)
        assert CAL.is_workday(d) is expected, d
    assert [d.weekday() for d in MAKE_UP] == [6, 5]


@pytest.mark.parametrize(
    "start, n, expected",
    [
        (date(2026, 9, 30), 1, date(2026, 10, 8)),  # over the whole holiday
        (date(2026, 9, 30), 2, date(2026, 10, 9)),
        (date(2026, 10, 1), 2, date(2026, 10, 9)),  # applied on a holiday: counting starts after it
        (date(2026, 10, 9), 1, date(2026, 10, 10)),  # Saturday 10 Oct is a working day
        (date(2026, 10, 9), 2, date(2026, 10, 12)),  # Sunday 11 Oct is not
        (date(2026, 9, 19), 1, date(2026, 9, 20)),  # Sunday 20 Sep is a working day
        (date(2026, 9, 24), 2, date(2026, 9, 29)),  # over the Mid-Autumn weekend
        (date(2026, 9, 29), 0, date(2026, 9, 29)),
        (date(2026, 9, 28), 5, date(2026, 10, 10)),  # 29 Sep, 30 Sep, 8 Oct, 9 Oct, Sat 10 Oct
    ],
)
def test_add_working_days(start: date, n: int, expected: date) -> None:
    assert add_working_days(start, n, CAL) == expected


def test_decision_deadline_is_the_end_of_the_second_working_day_in_shanghai() -> None:
    applied = datetime(2026, 9, 30, 9, 30, tzinfo=SHANGHAI)
    due = decision_deadline(applied, CAL)
    assert due == datetime(2026, 10, 10, 0, 0, tzinfo=SHANGHAI)  # end of Fri 9 Oct
    assert due.tzinfo == timezone.utc
    # 30 Sep 23:30 in Shanghai is 15:30 UTC: the local day counts, not the UTC day
    assert decision_deadline(datetime(2026, 9, 30, 15, 30, tzinfo=timezone.utc), CAL) == due
    # applied on Friday 9 Oct: Saturday 10 Oct (make-up) and Monday 12 Oct
    assert decision_deadline(datetime(2026, 10, 9, 17, 0, tzinfo=SHANGHAI), CAL) == datetime(
        2026, 10, 13, tzinfo=SHANGHAI
    )
    with pytest.raises(ValueError):
        decision_deadline(datetime(2026, 9, 30, 9, 30), CAL)


def test_a_year_nobody_knows_raises_unless_weekdays_are_allowed() -> None:
    year = 2099
    assert not CAL.knows(year) and CAL.knows(2026)
    with pytest.raises(UnknownYearError, match="2099"):
        CAL.is_workday(date(year, 3, 2))
    lenient = WorkdayCalendar(weekdays_if_unknown=True)
    assert lenient.is_workday(date(year, 3, 2)) and not lenient.is_workday(date(year, 3, 1))


def test_the_override_file_defines_an_unknown_year(tmp_path: Path) -> None:
    path = tmp_path / "workdays.yaml"
    path.write_text(
        "years:\n  2099:\n    holidays: [2099-10-01..2099-10-07]\n    workdays: ['2099-10-10']\n",
        encoding="utf-8",
    )
    cal = load_calendar(path)
    assert cal.knows(2099)
    assert not cal.is_workday(date(2099, 10, 1)) and cal.is_workday(date(2099, 10, 10))  # a Saturday
    assert cal.add_working_days(date(2099, 9, 30), 2) == date(2099, 10, 9)
    assert cal.is_workday(date(2026, 10, 10))  # other years still come from the package


def test_the_override_file_wins_over_the_package(tmp_path: Path) -> None:
    path = tmp_path / "workdays.yaml"
    path.write_text("years:\n  2026:\n    holidays: []\n    workdays: []\n", encoding="utf-8")
    cal = load_calendar(path)
    assert cal.is_workday(date(2026, 10, 1)) and not cal.is_workday(date(2026, 10, 10))


@pytest.mark.parametrize(
    "text, line, field",
    [
        ("years:\n  2099:\n    holidays: [2098-10-01]\n", 3, "years.2099.holidays.0"),
        ("years:\n  2099:\n    holidays:\n      - 2099-10-01\n      - 1 Oct\n", 5, "years.2099.holidays.1"),
        ("years:\n  2099:\n    holidays: ['2099-10-07..2099-10-01']\n", 3, "years.2099.holidays.0"),
        ("years:\n  2099:\n    holidays: [2099-10-01]\n    workdays: [2099-10-01]\n", 2, "years.2099"),
        ("years:\n  2099:\n    holiday: [2099-10-01]\n", 2, "years.2099"),
        ("years:\n  twenty: {}\n", 2, "years.twenty"),
        ("calendar: {}\n", 1, "calendar"),
    ],
)
def test_bad_override_files_name_file_line_and_field(tmp_path: Path, text: str, line: int, field: str) -> None:
    path = tmp_path / "workdays.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFileError) as info:
        load_calendar(path)
    assert (info.value.source, info.value.line, info.value.field) == (str(path), line, field), str(info.value)


def test_the_shipped_override_file_is_valid() -> None:
    assert DEFAULT_OVERRIDE_FILE.exists()
    load_calendar(DEFAULT_OVERRIDE_FILE)
