"""Declared peak / trough periods: validation, the "is t inside a declared period" calendar, declared hours."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import msgspec
import pytest

from streams.declarations import (
    Declaration, DeclarationError, applies_to, covers, declaration_decoder, declared_hours, from_row,
    in_declared_period, row, validate, COLUMNS,
)  # fmt: skip

UTC = timezone.utc
CST = timezone(timedelta(hours=8))
OWNERS = {"r1": "u1", "r2": "u1", "x1": "u2"}


def unit_of(rid: str) -> str | None:
    return OWNERS.get(rid)


# payroll: the 10th and 11th of every month, 08:00–18:00 local time
PAYROLL = Declaration("d-pay", "u1", "peak", "monthly", ["r1"], month_days=[10, 11], time_from="08:00", time_to="18:00")
WEEKEND = Declaration("d-wk", "u1", "trough", "weekly", weekdays=[6, 7])
TERM = Declaration("d-term", "u1", "trough", "once", starts_at=datetime(2026, 7, 10, tzinfo=CST),
                   ends_at=datetime(2026, 8, 31, tzinfo=CST))  # fmt: skip


def test_valid_declarations_pass() -> None:
    for d in (PAYROLL, WEEKEND, TERM):
        validate(d, unit_of)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"starts_at": datetime(2026, 9, 1, tzinfo=CST)}, "inverted_range"),
        ({"ends_at": datetime(2026, 7, 10, tzinfo=CST)}, "inverted_range"),  # empty range
        ({"ends_at": None}, "invalid_declaration"),
        ({"starts_at": datetime(2026, 7, 10)}, "invalid_declaration"),  # no time zone
        ({"ends_at": datetime(2027, 7, 12, tzinfo=CST)}, "invalid_declaration"),  # over 366 days
        ({"weekdays": [1]}, "invalid_declaration"),
        ({"time_from": "09:00", "time_to": "17:00"}, "invalid_declaration"),  # one-off: no time of day
        ({"resource_ids": ["x1"]}, "foreign_resource"),
        ({"resource_ids": ["r1", "ghost"]}, "unknown_resource"),
        ({"declaration_id": ""}, "invalid_declaration"),
        ({"unit_id": ""}, "invalid_declaration"),
    ],
)
def test_once_rules(changes: dict, code: str) -> None:
    with pytest.raises(DeclarationError) as exc:
        validate(msgspec.structs.replace(TERM, **changes), unit_of)
    assert exc.value.code == code and exc.value.zh and exc.value.en


@pytest.mark.parametrize(
    ("base", "changes", "code"),
    [
        (PAYROLL, {"month_days": []}, "invalid_declaration"),
        (PAYROLL, {"month_days": [0]}, "invalid_declaration"),
        (PAYROLL, {"month_days": [32]}, "invalid_declaration"),
        (PAYROLL, {"weekdays": [1]}, "invalid_declaration"),
        (PAYROLL, {"time_from": "18:00", "time_to": "08:00"}, "inverted_range"),  # crosses midnight
        (PAYROLL, {"time_from": "08:00", "time_to": "08:00"}, "inverted_range"),
        (PAYROLL, {"time_to": "25:00"}, "invalid_declaration"),
        (PAYROLL, {"time_from": "8:00"}, "invalid_declaration"),
        (PAYROLL, {"valid_from": date(2026, 6, 1), "valid_until": date(2026, 5, 31)}, "inverted_range"),
        (PAYROLL, {"starts_at": datetime(2026, 1, 1, tzinfo=UTC)}, "invalid_declaration"),
        (WEEKEND, {"weekdays": [0]}, "invalid_declaration"),
        (WEEKEND, {"weekdays": [8]}, "invalid_declaration"),
        (WEEKEND, {"weekdays": []}, "invalid_declaration"),
        (WEEKEND, {"resource_ids": ["r2", "x1"]}, "foreign_resource"),
    ],
)
def test_recurring_rules(base: Declaration, changes: dict, code: str) -> None:
    with pytest.raises(DeclarationError) as exc:
        validate(msgspec.structs.replace(base, **changes), unit_of)
    assert exc.value.code == code


def test_kind_and_recurrence_are_checked_on_decode() -> None:
    good = msgspec.json.encode(PAYROLL)
    assert declaration_decoder.decode(good) == PAYROLL
    for field, bad in (("kind", "spike"), ("recurrence", "daily")):
        doc = msgspec.json.decode(good)
        doc[field] = bad
        with pytest.raises(msgspec.ValidationError):
            declaration_decoder.decode(msgspec.json.encode(doc))


@pytest.mark.parametrize(
    ("t", "inside"),
    [
        (datetime(2026, 3, 10, 0, 0, tzinfo=UTC), True),  # 08:00 local on the 10th: start is inclusive
        (datetime(2026, 3, 9, 23, 59, tzinfo=UTC), False),  # 07:59 local
        (datetime(2026, 3, 10, 9, 59, 59, tzinfo=UTC), True),  # 17:59:59 local
        (datetime(2026, 3, 10, 10, 0, tzinfo=UTC), False),  # 18:00 local: end is exclusive
        (datetime(2026, 3, 11, 3, 0, tzinfo=UTC), True),  # the 11th
        (datetime(2026, 3, 12, 3, 0, tzinfo=UTC), False),
        (datetime(2026, 3, 10, 12, 0, tzinfo=CST), True),  # any zone: the instant matters
    ],
)
def test_monthly_payroll_calendar(t: datetime, inside: bool) -> None:
    assert covers(PAYROLL, t) is inside


def test_day_31_does_not_occur_in_30_day_months() -> None:
    d = Declaration("d", "u1", "peak", "monthly", month_days=[31])
    assert covers(d, datetime(2026, 3, 31, 12, tzinfo=CST))
    assert not any(covers(d, datetime(2026, 4, day, 12, tzinfo=CST)) for day in range(1, 31))
    assert not covers(d, datetime(2026, 5, 1, 0, 30, tzinfo=CST))


def test_weekly_weekend_in_local_time() -> None:
    # 2026-03-14 is a Saturday: it starts at Friday 16:00 UTC
    assert covers(WEEKEND, datetime(2026, 3, 13, 16, 0, tzinfo=UTC))
    assert not covers(WEEKEND, datetime(2026, 3, 13, 15, 59, 59, tzinfo=UTC))
    assert covers(WEEKEND, datetime(2026, 3, 15, 15, 59, tzinfo=UTC))  # Sunday 23:59 local
    assert not covers(WEEKEND, datetime(2026, 3, 15, 16, 0, tzinfo=UTC))  # Monday 00:00 local


def test_validity_range_limits_recurring_days() -> None:
    d = msgspec.structs.replace(WEEKEND, valid_from=date(2026, 3, 15), valid_until=date(2026, 3, 21))
    assert not covers(d, datetime(2026, 3, 14, 12, tzinfo=CST))  # Saturday before
    assert covers(d, datetime(2026, 3, 15, 12, tzinfo=CST))
    assert covers(d, datetime(2026, 3, 21, 23, 59, tzinfo=CST))  # valid_until is inclusive
    assert not covers(d, datetime(2026, 3, 22, 12, tzinfo=CST))


def test_once_range_is_half_open() -> None:
    assert covers(TERM, datetime(2026, 7, 10, tzinfo=CST))
    assert covers(TERM, datetime(2026, 8, 30, 23, 59, tzinfo=CST))
    assert not covers(TERM, datetime(2026, 8, 31, tzinfo=CST))


def test_in_declared_period_is_per_resource() -> None:
    t = datetime(2026, 3, 10, 10, tzinfo=CST)  # payroll time
    assert in_declared_period([PAYROLL], "r1", "u1", t)
    assert not in_declared_period([PAYROLL], "r2", "u1", t)  # payroll names r1 only
    assert not in_declared_period([PAYROLL], "r1", "u2", t)  # another unit's resource
    sat = datetime(2026, 3, 14, 10, tzinfo=CST)
    assert in_declared_period([PAYROLL, WEEKEND], "r2", "u1", sat)  # no resource list: the whole unit
    gone = msgspec.structs.replace(WEEKEND, withdrawn=True)
    assert not applies_to(gone, "r2", "u1") and not in_declared_period([gone], "r2", "u1", sat)


def test_declared_hours_of_a_window() -> None:
    d = Declaration("d", "u1", "peak", "monthly", month_days=[10], time_from="08:00", time_to="09:30")
    start = int(datetime(2026, 3, 9, tzinfo=UTC).timestamp() * 1000)
    end = int(datetime(2026, 3, 12, tzinfo=UTC).timestamp() * 1000)
    hours = declared_hours([d], "r1", "u1", start, end)
    # 08:00–09:30 local on the 10th = 00:00–01:30 UTC: the hours starting 00:00 and 01:00 UTC
    assert sorted(hours) == [int(datetime(2026, 3, 10, h, tzinfo=UTC).timestamp() * 1000) for h in (0, 1)]
    assert declared_hours([d], "x1", "u2", start, end) == set()


def test_row_round_trip() -> None:
    dated = msgspec.structs.replace(WEEKEND, valid_from=date(2026, 1, 1), ts=datetime(2026, 1, 1, tzinfo=UTC))
    for d in (PAYROLL, TERM, dated):
        r = dict(zip(COLUMNS, row(d, 1)))
        assert from_row(r) == d
