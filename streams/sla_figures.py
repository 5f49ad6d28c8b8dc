"""Provider service quality per period (R3, §33): fault rate, availability, satisfaction, breaches.

The arithmetic is pure (times in epoch ms, ``as_of_ms`` passed in); :func:`load` and
:func:`period_figures` read its inputs with the report queries ``sql/reports/sla_*.sql``.
Definitions (docs/sla.md, "Fault rate, availability, satisfaction"):

- *in service*: a resource from its first ``delivered`` to its first ``deregistered`` lifecycle
  event; time after ``as_of`` does not count yet.
- *resource-months* of a period: for each calendar month (Asia/Shanghai) it overlaps, the
  resources' in-service time within period ∩ month divided by the month's length; a resource in
  service for a whole month is one resource-month, one delivered on the 16th of a 30-day month
  15/30. For a whole month this is "resource-days / days in the month", the average count.
- *fault rate*: non-drill incidents opened in the period × 100 / resource-months (incidents per
  100 resources per month); None without resource-months.
- *availability*: 100 × (1 − down / in-service resource-time). A resource is down while it is
  listed in a non-drill P1/P2 incident, from ``opened`` to ``resolved`` (unresolved: to the
  period's end or ``as_of``), and only while in service; overlapping incidents on one resource
  count once (union). None without in-service time.
- *satisfaction*: mean score of the latest rating per subject (ratings of drills excluded), a
  month rating counted on the first day of its month, an incident rating on its opening day.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import sql
from opscenter.workdays import SHANGHAI

if TYPE_CHECKING:  # the store is passed in; this module does no I/O of its own
    from opscenter.store import AsyncStore

GROUP_BY = ("day", "month", "quarter", "year")
FIGURE_KEYS = ("availability_pct", "within_target_pct", "breaches_p1", "breaches_p2", "breaches_p3",
               "breaches_p4", "satisfaction", "fault_rate")  # fmt: skip
MIN_MS = 60_000


def day_start_ms(d: date) -> int:
    """Epoch ms of the start (00:00 Asia/Shanghai) of a calendar day."""
    return int(datetime.combine(d, time(0), SHANGHAI).timestamp() * 1000)


def local_day(ms: int) -> date:
    """The Asia/Shanghai calendar day of an instant."""
    return datetime.fromtimestamp(ms / 1000, SHANGHAI).date()


def period_start(d: date, group_by: str) -> date:
    """The first day of the period (day, month, quarter or year) that contains ``d``."""
    if group_by == "day":
        return d
    if group_by == "month":
        return d.replace(day=1)
    if group_by == "quarter":
        return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)
    if group_by == "year":
        return date(d.year, 1, 1)
    raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}")


def _add_months(d: date, n: int) -> date:
    m = d.month - 1 + n
    return date(d.year + m // 12, m % 12 + 1, 1)


def next_period(start: date, group_by: str) -> date:
    """The first day of the period after the one starting at ``start``."""
    if group_by == "day":
        return start + timedelta(days=1)
    return _add_months(start, {"month": 1, "quarter": 3, "year": 12}[group_by])


@dataclass(frozen=True, slots=True)
class Period:
    """One reporting period, labelled by its first day, clipped to the query range (hi exclusive)."""

    label: date
    lo_ms: int
    hi_ms: int


def periods(first: date, end: date, group_by: str) -> list[Period]:
    """The periods covering the days [first, end) (``end`` exclusive), the outer ones clipped."""
    out = []
    start = period_start(first, group_by)
    while start < end:
        nxt = next_period(start, group_by)
        out.append(Period(start, day_start_ms(max(start, first)), day_start_ms(min(nxt, end))))
        start = nxt
    return out


class Step:
    """The number of intervals covering each instant, integrated over any range (ms × count)."""

    def __init__(self, intervals: Iterable[tuple[int, int]]) -> None:
        edges: dict[int, int] = {}
        for a, b in intervals:
            if b > a:
                edges[a] = edges.get(a, 0) + 1
                edges[b] = edges.get(b, 0) - 1
        self.xs = sorted(edges)
        self.levels: list[int] = []  # count on [xs[i], xs[i+1])
        self.cum: list[int] = []  # integral from xs[0] to xs[i]
        level = total = 0
        for i, x in enumerate(self.xs):
            if i:
                total += level * (x - self.xs[i - 1])
            level += edges[x]
            self.levels.append(level)
            self.cum.append(total)

    def _upto(self, t: int) -> int:
        i = bisect_right(self.xs, t) - 1
        return 0 if i < 0 else self.cum[i] + self.levels[i] * (t - self.xs[i])

    def integral(self, lo: int, hi: int) -> int:
        """∫ count dt over [lo, hi) in ms (0 when hi <= lo)."""
        return self._upto(hi) - self._upto(lo) if hi > lo else 0


def merge(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of half-open intervals, as disjoint sorted intervals."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def month_bounds(lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(start, end, month length) in ms of each calendar month (Asia/Shanghai) that [lo, hi) overlaps."""
    out = []
    m = local_day(lo).replace(day=1)
    while (m_lo := day_start_ms(m)) < hi:
        nxt = _add_months(m, 1)
        m_hi = day_start_ms(nxt)
        out.append((m_lo, m_hi, m_hi - m_lo))
        m = nxt
    return out


@dataclass
class ProviderData:
    """One provider's inputs for a range of days (as read by :func:`load`)."""

    #: (resource, delivered ms, deregistered ms or None)
    in_service: list[tuple[str, int, int | None]] = field(default_factory=list)
    #: (incident, resource, opened ms, resolved ms or None) of non-drill P1/P2 incidents
    down: list[tuple[str, str, int, int | None]] = field(default_factory=list)
    #: (incident, severity, drill, opened ms, answered ms or None, resolved ms or None) of
    #: incidents opened in the range (answered: acknowledged, or resolved if that came first)
    incidents: list[tuple[str, str, bool, int, int | None, int | None]] = field(default_factory=list)
    #: (day, score sum, number of ratings)
    ratings: list[tuple[date, int, int]] = field(default_factory=list)


class Quality:
    """Fault rate, availability and satisfaction of one provider, for any period (pure)."""

    def __init__(self, data: ProviderData, as_of_ms: int) -> None:
        self.data, self.as_of_ms = data, as_of_ms
        service: dict[str, tuple[int, int]] = {}
        for rid, start, end in data.in_service:
            stop = min(as_of_ms if end is None else end, as_of_ms)
            if stop > start:
                service[rid] = (start, stop)
        by_resource: dict[str, list[tuple[int, int]]] = {}
        for _inc, rid, opened, resolved in data.down:
            if rid not in service:
                continue  # not in service (or unknown): no in-service time to lose
            s_lo, s_hi = service[rid]
            end = min(as_of_ms if resolved is None else resolved, as_of_ms)
            by_resource.setdefault(rid, []).append((max(opened, s_lo), min(end, s_hi)))
        self.service = Step(service.values())
        self.down = Step(iv for ivs in by_resource.values() for iv in merge(ivs))
        # sorted, so a period finds its incidents and ratings by bisection (day grouping, years)
        self.incidents = sorted(data.incidents, key=lambda i: i[3])
        self._opened = [i[3] for i in self.incidents]
        self.ratings = sorted(data.ratings)
        self._rated = [r[0] for r in self.ratings]

    def figures(self, lo: int, hi: int) -> dict[str, Any]:
        """The figures of the period [lo, hi) (epoch ms)."""
        in_service_ms = self.service.integral(lo, hi)
        down_ms = self.down.integral(lo, hi)
        resource_months = sum(
            self.service.integral(max(lo, m_lo), min(hi, m_hi)) / length for m_lo, m_hi, length in month_bounds(lo, hi)
        )
        opened = self.incidents[bisect_left(self._opened, lo) : bisect_left(self._opened, hi)]
        counted = [i for i in opened if not i[2]]
        incidents = len(counted)
        answered = [i[4] - i[3] for i in counted if i[4] is not None]
        restored = [i[5] - i[3] for i in counted if i[5] is not None]
        rated = self.ratings[bisect_left(self._rated, local_day(lo)) : bisect_left(self._rated, local_day(hi))]
        score_sum, count = sum(r[1] for r in rated), sum(r[2] for r in rated)
        return {
            "incidents": incidents,
            "mtta_s": round(sum(answered) / len(answered) / 1000, 1) if answered else None,
            "mttr_s": round(sum(restored) / len(restored) / 1000, 1) if restored else None,
            "drill_incidents": [i[0] for i in opened if i[2]],
            "resource_months": round(resource_months, 4),
            "fault_rate": round(100 * incidents / resource_months, 4) if resource_months > 0 else None,
            "in_service_min": round(in_service_ms / MIN_MS, 2),
            "down_min": round(down_ms / MIN_MS, 2),
            "availability_pct": round(100 * (1 - down_ms / in_service_ms), 4) if in_service_ms > 0 else None,
            "satisfaction": {"mean": round(score_sum / count, 4) if count else None, "count": count},
        }


# -- reading the inputs ----------------------------------------------------------------------


def _ms(v: Any) -> int | None:
    return None if v is None else int(v)


async def load(store: AsyncStore, provider: str, from_ms: int, to_ms: int) -> dict[str, ProviderData]:
    """Every provider's inputs for [from, to) (``provider`` '' = all), in four report queries."""
    p = {"provider": provider, "from_ms": from_ms, "to_ms": to_ms}
    days = {"provider": provider, "from_day": local_day(from_ms), "to_day": local_day(to_ms)}
    service, down, incidents, ratings = await asyncio.gather(
        store.query(sql.report("sla_in_service"), p),
        store.query(sql.report("sla_down"), p),
        store.query(sql.report("sla_incidents"), p),
        store.query(sql.report("sla_ratings"), days),
    )
    out: dict[str, ProviderData] = {}

    def of(pid: str) -> ProviderData:
        return out.setdefault(pid, ProviderData())

    for pid, rid, start, end in service:
        of(pid).in_service.append((rid, int(start), _ms(end)))
    for pid, inc, rid, opened, resolved in down:
        of(pid).down.append((inc, rid, int(opened), _ms(resolved)))
    for pid, inc, sev, drill, opened, answered, resolved in incidents:
        of(pid).incidents.append((inc, sev, bool(drill), int(opened), _ms(answered), _ms(resolved)))
    for pid, day, score_sum, n in ratings:
        of(pid).ratings.append((day, int(score_sum), int(n)))
    return out


async def quality_rows(
    store: AsyncStore, provider: str, first: date, end: date, group_by: str, as_of_ms: int
) -> list[dict[str, Any]]:
    """One row per provider and period of the days [first, end) that has anything to show.

    A (provider, period) is left out when the provider had no resource in service, no incident
    (drills included) and no rating in it.
    """
    spans = periods(first, end, group_by)
    if not spans:
        return []
    data = await load(store, provider, spans[0].lo_ms, spans[-1].hi_ms)
    rows = []
    for pid in sorted(data):
        q = Quality(data[pid], as_of_ms)
        for s in spans:
            f = q.figures(s.lo_ms, s.hi_ms)
            if not (f["in_service_min"] or f["incidents"] or f["drill_incidents"] or f["satisfaction"]["count"]):
                continue
            rows.append({"provider_id": pid, "period": s.label.isoformat(), "from": local_day(s.lo_ms).isoformat(),
                         "to": local_day(s.hi_ms).isoformat(), **f})  # fmt: skip
    return rows


def _within_target_pct(rows: Sequence[dict[str, Any]]) -> float | None:
    decided = sum(r["restore_decided"] for r in rows)
    within = sum(r["restore_within"] for r in rows)
    return round(100 * within / decided, 4) if decided else None


async def period_figures(store: AsyncStore, provider_id: str, first: date, last: date, as_of_ms: int) -> dict:
    """A provider's SLA figures for the days [first, last] (Asia/Shanghai, both inclusive), for the fee assessment.

    Keys: ``availability_pct``, ``within_target_pct`` (restore clocks of decided non-drill
    incidents opened in the period that stopped in time, in %), ``breaches_p1``…``breaches_p4``
    (``sla_breach`` signals of non-drill incidents opened in the period, by severity),
    ``satisfaction`` (mean score) and ``fault_rate``; None where there is no data.
    """
    if last < first:
        raise ValueError(f"last day {last} is before first day {first}")
    lo, hi = day_start_ms(first), day_start_ms(last + timedelta(days=1))
    span = {"provider": provider_id, "from_ms": lo, "to_ms": hi}
    data, clocks, breaches = await asyncio.gather(
        load(store, provider_id, lo, hi),
        # the clocks of the whole span: "year" groups, summed (a span may cross a year's end)
        store.query_dicts(sql.report("sla_provider"), {**span, "group_by": "year", "as_of_ms": as_of_ms}),
        store.query(sql.report("sla_breaches"), span),
    )
    f = Quality(data.get(provider_id, ProviderData()), as_of_ms).figures(lo, hi)
    per_severity = {str(sev): int(n) for sev, n in breaches}
    return {
        "availability_pct": f["availability_pct"],
        "within_target_pct": _within_target_pct(clocks),
        **{f"breaches_{s.lower()}": per_severity.get(s, 0) for s in ("P1", "P2", "P3", "P4")},
        "satisfaction": f["satisfaction"]["mean"],
        "fault_rate": f["fault_rate"],
    }
