"""Declared business peak and trough periods of units (§30): format, validation, calendar (pure).

A unit declares, for all or some of its own resources, periods in which its load is
expected to be unusual: one-off date-time ranges (a census, a school term), weekly
(weekdays) or monthly (days of the month, e.g. payroll days) recurring days, optionally
limited to a local time of day and to a validity range of days. Recurring periods are in
local time, Asia/Shanghai (UTC+8, no daylight saving). Right-sizing does not count hours that
overlap such a period as evidence (see :mod:`streams.rightsizing`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal

import msgspec

LOCAL_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
#: the ``type`` of declarations.v1 messages handled here (the topic also carries others)
DECLARATION_TYPE = "business_period"
MAX_ONCE_DAYS = 366
HOUR_MS = 3_600_000
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


class Declaration(msgspec.Struct, forbid_unknown_fields=False):
    """declarations.v1, ``type: business_period``: one declared peak or trough period (§30)."""

    declaration_id: str
    unit_id: str
    kind: Literal["peak", "trough"]
    recurrence: Literal["once", "weekly", "monthly"]
    resource_ids: list[str] = []  # empty: every resource of the unit
    starts_at: datetime | None = None  # once: [starts_at, ends_at)
    ends_at: datetime | None = None
    weekdays: list[int] = []  # weekly: 1 = Monday … 7 = Sunday
    month_days: list[int] = []  # monthly: 1 … 31 (a day a month lacks does not occur)
    time_from: str = "00:00"  # recurring: local time of day, [time_from, time_to)
    time_to: str = "24:00"
    valid_from: date | None = None  # recurring: first and last local day it applies
    valid_until: date | None = None
    note: str = ""
    declared_by: str = ""
    ts: datetime | None = None  # when it was declared; the newest version of an id wins
    withdrawn: bool = False
    type: str = DECLARATION_TYPE
    v: int = 1


class _Envelope(msgspec.Struct, forbid_unknown_fields=False):
    type: str = ""


envelope_decoder = msgspec.json.Decoder(_Envelope)
declaration_decoder = msgspec.json.Decoder(Declaration)


class DeclarationError(ValueError):
    """A declaration that breaks a rule; ``code`` is machine-readable, messages zh and en."""

    def __init__(self, code: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.code, self.zh, self.en = code, zh, en


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def validate(d: Declaration, unit_of: Callable[[str], str | None]) -> None:
    """Raise :class:`DeclarationError` unless ``d`` is well-formed and names only its unit's resources.

    ``unit_of(resource_id)`` is the unit owning a resource, or None if it is unknown.
    """
    if not d.declaration_id or len(d.declaration_id) > 128:
        raise DeclarationError("invalid_declaration", "申报编号为空或过长", "declaration_id must have 1-128 characters")
    if not d.unit_id:
        raise DeclarationError("invalid_declaration", "缺少使用单位", "unit_id is required")
    if d.recurrence == "once":
        if d.starts_at is None or d.ends_at is None:
            raise DeclarationError("invalid_declaration", "一次性申报需要起止时间",
                                   "a one-off period needs starts_at and ends_at")  # fmt: skip
        if d.starts_at.tzinfo is None or d.ends_at.tzinfo is None:
            raise DeclarationError("invalid_declaration", "起止时间需带时区", "starts_at and ends_at need a time zone")
        if d.starts_at >= d.ends_at:
            raise DeclarationError("inverted_range", "开始时间须早于结束时间", "starts_at must be before ends_at")
        if d.ends_at - d.starts_at > timedelta(days=MAX_ONCE_DAYS):
            raise DeclarationError("invalid_declaration", f"一次性申报不得超过{MAX_ONCE_DAYS}天",
                                   f"a one-off period lasts at most {MAX_ONCE_DAYS} days")  # fmt: skip
        if d.weekdays or d.month_days:
            raise DeclarationError("invalid_declaration", "一次性申报不能指定星期或日期",
                                   "a one-off period takes no weekdays or month_days")  # fmt: skip
    else:
        if d.starts_at is not None or d.ends_at is not None:
            raise DeclarationError(
                "invalid_declaration", "周期性申报请用有效日期范围",
                "a recurring period takes valid_from / valid_until, not starts_at / ends_at",
            )
        days, lo, hi, what = (
            (d.weekdays, 1, 7, "weekdays") if d.recurrence == "weekly" else (d.month_days, 1, 31, "month_days")
        )
        if not days or any(not lo <= x <= hi for x in days):
            raise DeclarationError("invalid_declaration", f"{what} 须为 {lo}–{hi} 的非空列表",
                                   f"{what} must be a non-empty list of {lo}-{hi}")  # fmt: skip
        if d.recurrence == "weekly" and d.month_days or d.recurrence == "monthly" and d.weekdays:
            raise DeclarationError("invalid_declaration", "星期与日期不能同时指定",
                                   "weekly periods take weekdays only, monthly ones month_days only")  # fmt: skip
    for t in (d.time_from, d.time_to):
        if not _HHMM.match(t):
            raise DeclarationError("invalid_declaration", "时刻格式应为 HH:MM",
                                   f"time {t!r} is not HH:MM (00:00-24:00)")  # fmt: skip
    if _minutes(d.time_from) >= _minutes(d.time_to):
        raise DeclarationError("inverted_range", "开始时刻须早于结束时刻",
                               "time_from must be before time_to (split a period that crosses midnight)")  # fmt: skip
    if d.recurrence == "once" and (d.time_from, d.time_to) != ("00:00", "24:00"):
        raise DeclarationError("invalid_declaration", "一次性申报不能指定时刻",
                               "a one-off period takes no time of day")  # fmt: skip
    if d.valid_from and d.valid_until and d.valid_from > d.valid_until:
        raise DeclarationError("inverted_range", "有效期开始日须不晚于结束日",
                               "valid_from must not be after valid_until")  # fmt: skip
    for rid in d.resource_ids:
        owner = unit_of(rid)
        if owner is None:
            raise DeclarationError("unknown_resource", f"资源 {rid} 不存在", f"resource {rid!r} is not registered")
        if owner != d.unit_id:
            raise DeclarationError("foreign_resource", f"资源 {rid} 不属于本单位",
                                   f"resource {rid!r} does not belong to unit {d.unit_id!r}")  # fmt: skip


def applies_to(d: Declaration, resource_id: str, unit_id: str) -> bool:
    """Whether ``d`` covers the resource (of unit ``unit_id``)."""
    return not d.withdrawn and d.unit_id == unit_id and (not d.resource_ids or resource_id in d.resource_ids)


def _day_matches(d: Declaration, day: date) -> bool:
    if d.valid_from and day < d.valid_from or d.valid_until and day > d.valid_until:
        return False
    if d.recurrence == "weekly":
        return day.isoweekday() in d.weekdays
    return day.day in d.month_days


def overlaps(d: Declaration, start: datetime, end: datetime) -> bool:
    """Whether the instant range [start, end) shares any instant with a period of ``d``."""
    if d.withdrawn or start >= end:
        return False
    if d.recurrence == "once":
        assert d.starts_at is not None and d.ends_at is not None
        return start < d.ends_at and end > d.starts_at
    lo, hi = timedelta(minutes=_minutes(d.time_from)), timedelta(minutes=_minutes(d.time_to))
    day = start.astimezone(LOCAL_TZ).date()
    last = (end - timedelta(microseconds=1)).astimezone(LOCAL_TZ).date()
    while day <= last:
        if _day_matches(d, day):
            midnight = datetime.combine(day, time(0), LOCAL_TZ)
            if start < midnight + hi and end > midnight + lo:
                return True
        day += timedelta(days=1)
    return False


def covers(d: Declaration, t: datetime) -> bool:
    """Whether the instant ``t`` lies inside a period of ``d``."""
    return overlaps(d, t, t + timedelta(microseconds=1))


def in_declared_period(
    declarations: Iterable[Declaration], resource_id: str, unit_id: str, t: datetime
) -> bool:
    """Whether instant ``t`` lies inside a declared peak or trough period of the resource."""
    return any(applies_to(d, resource_id, unit_id) and covers(d, t) for d in declarations)


def declared_hours(
    declarations: Iterable[Declaration], resource_id: str, unit_id: str, from_ms: int, to_ms: int
) -> set[int]:
    """Starts (epoch ms) of the whole hours in [from_ms, to_ms) that overlap a declared period."""
    mine = [d for d in declarations if applies_to(d, resource_id, unit_id)]
    if not mine:
        return set()
    out = set()
    h = from_ms - from_ms % HOUR_MS
    while h < to_ms:
        start = datetime.fromtimestamp(h / 1000, timezone.utc)
        if any(overlaps(d, start, start + timedelta(hours=1)) for d in mine):
            out.add(h)
        h += HOUR_MS
    return out


def row(d: Declaration, version: int) -> list[object]:
    """The ``declarations`` table row of ``d`` (columns :data:`COLUMNS`)."""
    return [d.declaration_id, d.unit_id, d.kind, d.recurrence, list(d.resource_ids), d.starts_at, d.ends_at,
            list(d.weekdays), list(d.month_days), d.time_from, d.time_to, d.valid_from, d.valid_until,
            d.note, d.declared_by, d.ts, int(d.withdrawn), version]  # fmt: skip


COLUMNS = (
    "declaration_id", "unit_id", "kind", "recurrence", "resource_ids", "starts_at", "ends_at", "weekdays",
    "month_days", "time_from", "time_to", "valid_from", "valid_until", "note", "declared_by", "ts",
    "withdrawn", "version",
)  # fmt: skip


def from_row(r: dict[str, object]) -> Declaration:
    """A :class:`Declaration` from a ``declarations`` row (ClickHouse returns naive UTC times)."""

    def utc(v: object) -> datetime | None:
        if not isinstance(v, datetime):
            return None
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)

    return Declaration(
        declaration_id=str(r["declaration_id"]), unit_id=str(r["unit_id"]), kind=r["kind"],  # type: ignore[arg-type]
        recurrence=r["recurrence"], resource_ids=list(r["resource_ids"]),  # type: ignore[arg-type, call-overload]
        starts_at=utc(r["starts_at"]), ends_at=utc(r["ends_at"]),
        weekdays=[int(x) for x in r["weekdays"]], month_days=[int(x) for x in r["month_days"]],  # type: ignore[attr-defined]
        time_from=str(r["time_from"]), time_to=str(r["time_to"]),
        valid_from=r["valid_from"], valid_until=r["valid_until"],  # type: ignore[arg-type]
        note=str(r["note"]), declared_by=str(r["declared_by"]), ts=utc(r["ts"]), withdrawn=bool(r["withdrawn"]),
    )  # fmt: skip
