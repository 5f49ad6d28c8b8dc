"""Fee arithmetic (R5; §6, §12, §33–§35): price-list rules, the quality deduction and the totals; pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from opscenter.datafile import Doc, parse_yaml

CENT = Decimal("0.01")
PRICE_QUANTUM = Decimal("0.0001")  # price_versions columns are Decimal(18, 4)
PRICE_MAX = Decimal(100_000_000)
DEFAULT_SCHEME_FILE = Path(__file__).parent / "data" / "deduction.yaml"
SEVERITIES = ("P1", "P2", "P3", "P4")
DAY_MIN, DAY_MAX = date(1970, 1, 1), date(2149, 6, 6)  # ClickHouse Date
_CLASS_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")

#: excluded day statuses and why (§34), Chinese and English
EXCLUSION_REASONS: dict[str, tuple[str, str]] = {
    "unsupervised": ("未纳入云管平台监管：当日监测数据完整率低于阈值", "not under supervision: telemetry completeness below the threshold"),
    "unqualified": ("市大数据局认定服务不合格", "service judged unqualified by the bureau"),
    "no_price": ("当日无适用计费标准", "no price version in force that day"),
}  # fmt: skip


def to_yuan(amount: Decimal) -> Decimal:
    """Round an amount to whole fen (0.01 yuan), half away from zero: the one rounding of a line."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


# -- billing standard (§6) ----------------------------------------------------------------------


class PriceError(ValueError):
    """A price-list version the billing standard refuses; names the field, in Chinese and English."""

    def __init__(self, field_: str, zh: str, en: str) -> None:
        self.field, self.zh, self.en = field_, zh, en
        super().__init__(f"{field_}: {en}")


@dataclass(frozen=True, slots=True)
class PriceVersion:
    """One version of the price list of a resource class: yuan per day and unit, [valid_from, valid_to)."""

    version_id: str
    resource_class: str
    valid_from: date
    valid_to: date | None
    vcpu_day: Decimal
    mem_gb_day: Decimal
    storage_gb_day: Decimal
    correction: bool = False
    reason: str = ""
    created_by: str = ""
    created_at: datetime | None = None


def parse_day(value: Any, name: str) -> date:
    """A calendar day from an ISO string (or a date), within ClickHouse's Date range."""
    if isinstance(value, date) and not isinstance(value, datetime):
        d = value
    else:
        try:
            d = date.fromisoformat(str(value))
        except ValueError:
            raise PriceError(name, f"{name} 须为日期 YYYY-MM-DD", f"{name} must be a date YYYY-MM-DD") from None
    if not DAY_MIN <= d <= DAY_MAX:
        raise PriceError(name, f"{name} 超出范围", f"{name} must be between {DAY_MIN} and {DAY_MAX}")
    return d


def _price(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise PriceError(name, f"{name} 须为数字", f"{name} must be a number")
    try:
        p = Decimal(str(value))
    except InvalidOperation:
        raise PriceError(name, f"{name} 须为数字", f"{name} must be a number") from None
    if not p.is_finite():
        raise PriceError(name, f"{name} 须为有限数字", f"{name} must be finite")
    if p < 0:
        raise PriceError(name, f"{name} 不得为负数", f"{name} must not be negative")
    if p >= PRICE_MAX:
        raise PriceError(name, f"{name} 过大", f"{name} must be below {PRICE_MAX}")
    if p != p.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_UP):
        raise PriceError(name, f"{name} 最多四位小数", f"{name} has more than 4 decimals")
    return p.quantize(PRICE_QUANTUM)


def parse_price(doc: Mapping[str, Any], version_id: str, actor: str, now: datetime) -> PriceVersion:
    """A new version from a request body, checked field by field (not yet against other versions)."""
    cls = str(doc.get("resource_class") or "standard")
    if not _CLASS_RE.match(cls):
        raise PriceError("resource_class", "资源类别名称无效", "resource_class: lowercase letters, digits, _ and -")
    for name in ("valid_from", "vcpu_day", "mem_gb_day", "storage_gb_day"):
        if doc.get(name) is None:
            raise PriceError(name, f"缺少 {name}", f"{name} is required")
    valid_from = parse_day(doc["valid_from"], "valid_from")
    valid_to = parse_day(doc["valid_to"], "valid_to") if doc.get("valid_to") is not None else None
    if valid_to is not None and valid_to <= valid_from:
        raise PriceError("valid_to", "失效日期须晚于生效日期", "valid_to must be after valid_from")
    correction = doc.get("correction", False)
    if not isinstance(correction, bool):
        raise PriceError("correction", "correction 须为 true 或 false", "correction must be true or false")
    reason = str(doc.get("reason") or "").strip()
    if len(reason) > 500:
        raise PriceError("reason", "说明过长", "reason is longer than 500 characters")
    return PriceVersion(
        version_id, cls, valid_from, valid_to, _price(doc["vcpu_day"], "vcpu_day"),
        _price(doc["mem_gb_day"], "mem_gb_day"), _price(doc["storage_gb_day"], "storage_gb_day"),
        correction, reason, actor, now,
    )  # fmt: skip


def check_new_version(new: PriceVersion, existing: Iterable[PriceVersion], today: date) -> None:
    """Raise PriceError unless ``new`` may be appended to the price list (never rewriting the past).

    A regular version starts today or later (Asia/Shanghai) and overlaps no version of its class:
    it may not share a start with one, start inside one's explicit [valid_from, valid_to), or
    (with its own valid_to) contain another's start. An open version that started earlier is
    superseded from the new start on: that is succession, not overlap. A correction (with a
    reason) may start in the past and overlap: where it does, it wins, and the older rows stay.
    """
    if new.correction:
        if not new.reason:
            raise PriceError("reason", "更正须说明原因", "a correction needs a reason")
        return
    if new.valid_from < today:
        raise PriceError(
            "valid_from", f"生效日期不得早于今天（{today}）；更正历史价格须标记为更正并说明原因",
            f"valid_from may not be before today ({today}) unless it is a correction with a reason",
        )  # fmt: skip
    for old in existing:
        if old.resource_class != new.resource_class:
            continue
        clash = (
            old.valid_from == new.valid_from
            or (old.valid_to is not None and old.valid_from < new.valid_from < old.valid_to)
            or (new.valid_to is not None and new.valid_from < old.valid_from < new.valid_to)
        )
        if clash:
            raise PriceError(
                "valid_from", f"与已有版本 {old.version_id}（{old.valid_from} 起）时间重叠",
                f"overlaps version {old.version_id} (from {old.valid_from})",
            )  # fmt: skip


# -- quality deduction (§33) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tier:
    """A figure below ``below`` costs ``deduct_pct`` percent of the billable amount."""

    below: Decimal
    deduct_pct: Decimal


@dataclass(frozen=True, slots=True)
class DeductionScheme:
    """The quality-deduction scheme of deduction.yaml, validated."""

    source: str
    cap_pct: Decimal
    supervision_threshold_pct: Decimal
    availability: tuple[Tier, ...]
    within_target: tuple[Tier, ...]
    satisfaction: tuple[Tier, ...]
    completeness: tuple[Tier, ...]
    breach_pct: Mapping[str, Decimal]
    breach_max_pct: Decimal
    satisfaction_min: Decimal = Decimal(1)
    satisfaction_max: Decimal = Decimal(5)


def _num(doc: Doc, path: tuple[Any, ...], value: Any, lo: Decimal, hi: Decimal) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise doc.error(path, "must be a number")
    d = Decimal(str(value))
    if not d.is_finite() or not lo <= d <= hi:
        raise doc.error(path, f"must be between {lo} and {hi}")
    return d


def _mapping(doc: Doc, path: tuple[Any, ...], value: Any, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise doc.error(path, "must be a mapping")
    unknown = set(value) - keys
    if unknown:
        raise doc.error(path + (min(map(str, unknown)),), f"unknown key; expected one of {', '.join(sorted(keys))}")
    missing = keys - set(value)
    if missing:
        raise doc.error(path, f"missing {', '.join(sorted(missing))}")
    return value


def _tiers(doc: Doc, path: tuple[Any, ...], value: Any, hi: Decimal) -> tuple[Tier, ...]:
    if not isinstance(value, list) or not value:
        raise doc.error(path, "must be a non-empty list of {below, deduct_pct}")
    out: list[Tier] = []
    for i, item in enumerate(value):
        m = _mapping(doc, path + (i,), item, {"below", "deduct_pct"})
        t = Tier(_num(doc, path + (i, "below"), m["below"], Decimal(0), hi),
                 _num(doc, path + (i, "deduct_pct"), m["deduct_pct"], Decimal(0), Decimal(100)))  # fmt: skip
        if out and not t.below < out[-1].below:
            raise doc.error(path + (i, "below"), "tiers go from mild to strict: each below must be lower than the last")
        if out and t.deduct_pct < out[-1].deduct_pct:
            raise doc.error(path + (i, "deduct_pct"), "a stricter tier may not deduct less than a milder one")
        out.append(t)
    return tuple(out)


def parse_scheme(doc: Doc) -> DeductionScheme:
    """A validated scheme from a parsed data file; errors name the file, line and field."""
    top = _mapping(doc, (), doc.value, {"cap_pct", "supervision_threshold_pct", "availability", "within_target",
                                        "breaches", "satisfaction", "completeness"})  # fmt: skip
    br = _mapping(doc, ("breaches",), top["breaches"], {"per_breach_pct", "max_pct"})
    per = _mapping(doc, ("breaches", "per_breach_pct"), br["per_breach_pct"], set(SEVERITIES))
    sat = _mapping(doc, ("satisfaction",), top["satisfaction"], {"scale", "tiers"})
    scale = sat["scale"]
    if not isinstance(scale, list) or len(scale) != 2:
        raise doc.error(("satisfaction", "scale"), "must be [lowest, highest]")
    s_lo = _num(doc, ("satisfaction", "scale", 0), scale[0], Decimal(0), Decimal(100))
    s_hi = _num(doc, ("satisfaction", "scale", 1), scale[1], s_lo, Decimal(100))
    if s_hi <= s_lo:
        raise doc.error(("satisfaction", "scale", 1), "must be above the lowest rating")
    return DeductionScheme(
        source=doc.source,
        cap_pct=_num(doc, ("cap_pct",), top["cap_pct"], Decimal(0), Decimal(100)),
        supervision_threshold_pct=_num(
            doc, ("supervision_threshold_pct",), top["supervision_threshold_pct"], Decimal(0), Decimal(100)
        ),
        availability=_tiers(doc, ("availability",), top["availability"], Decimal(100)),
        within_target=_tiers(doc, ("within_target",), top["within_target"], Decimal(100)),
        satisfaction=_tiers(doc, ("satisfaction", "tiers"), sat["tiers"], s_hi),
        completeness=_tiers(doc, ("completeness",), top["completeness"], Decimal(100)),
        breach_pct={s: _num(doc, ("breaches", "per_breach_pct", s), per[s], Decimal(0), Decimal(100)) for s in SEVERITIES},
        breach_max_pct=_num(doc, ("breaches", "max_pct"), br["max_pct"], Decimal(0), Decimal(100)),
        satisfaction_min=s_lo,
        satisfaction_max=s_hi,
    )  # fmt: skip


def scheme_from_text(text: str, source: str) -> DeductionScheme:
    """Parse and validate a scheme given as YAML text (the caller reads the file)."""
    return parse_scheme(parse_yaml(text, source))


@dataclass(frozen=True, slots=True)
class SlaFigures:
    """A provider's SLA results for the period; None = not known. ``sources`` says where each came from."""

    availability_pct: float | None = None
    within_target_pct: float | None = None
    breaches: Mapping[str, int] | None = None
    satisfaction: float | None = None
    completeness_pct: float | None = None
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Component:
    """One figure's share of the deduction, with the rule that produced it."""

    figure: str
    value: Any
    pct: Decimal
    rule: str
    source: str


@dataclass(frozen=True, slots=True)
class Deduction:
    """The quality deduction: capped percentage, its parts, and the figures that were missing."""

    pct: Decimal
    uncapped_pct: Decimal
    cap_pct: Decimal
    components: tuple[Component, ...]
    missing: tuple[str, ...]


def _tier_pct(tiers: tuple[Tier, ...], value: float) -> tuple[Decimal, str]:
    hit = [t for t in tiers if Decimal(str(value)) < t.below]
    if not hit:
        return Decimal(0), f">= {tiers[0].below}"
    t = max(hit, key=lambda x: x.deduct_pct)
    return t.deduct_pct, f"< {t.below} → {t.deduct_pct} %"


def check_figures(scheme: DeductionScheme, f: SlaFigures) -> list[str]:
    """The names of figures outside their range (empty: all usable)."""
    bad = []
    for name in ("availability_pct", "within_target_pct", "completeness_pct"):
        v = getattr(f, name)
        if v is not None and not 0 <= v <= 100:
            bad.append(name)
    if f.satisfaction is not None and not scheme.satisfaction_min <= Decimal(str(f.satisfaction)) <= scheme.satisfaction_max:
        bad.append("satisfaction")
    if f.breaches is not None and any(s not in SEVERITIES or n < 0 for s, n in f.breaches.items()):
        bad.append("breaches")
    return bad


def deduction(scheme: DeductionScheme, f: SlaFigures) -> Deduction:
    """The deduction percentage: the sum of each figure's tier (breaches: per breach, capped), capped."""
    parts: list[Component] = []
    missing: list[str] = []
    for name, tiers in (("availability_pct", scheme.availability), ("within_target_pct", scheme.within_target),
                        ("satisfaction", scheme.satisfaction), ("completeness_pct", scheme.completeness)):  # fmt: skip
        value = getattr(f, name)
        if value is None:
            missing.append(name)
            continue
        pct, rule = _tier_pct(tiers, value)
        parts.append(Component(name, value, pct, rule, f.sources.get(name, "")))
    if f.breaches is None:
        missing.append("breaches")
    else:
        raw = sum((scheme.breach_pct[s] * f.breaches.get(s, 0) for s in SEVERITIES), Decimal(0))
        pct = min(raw, scheme.breach_max_pct)
        rule = " + ".join(f"{f.breaches.get(s, 0)}×{scheme.breach_pct[s]}" for s in SEVERITIES)
        parts.append(Component("breaches", {s: f.breaches.get(s, 0) for s in SEVERITIES}, pct,
                               f"{rule} = {raw} %, max {scheme.breach_max_pct} %", f.sources.get("breaches", "")))  # fmt: skip
    uncapped = sum((c.pct for c in parts), Decimal(0))
    return Deduction(min(uncapped, scheme.cap_pct), uncapped, scheme.cap_pct, tuple(parts), tuple(missing))


# -- assessment (§12, §34, §35) -----------------------------------------------------------------


def effective_to(first: date, last: date, today: date) -> date | None:
    """The last day of [first, last] that has begun by ``today``: min(last, today); None if none has.

    Days after today are neither billed nor judged for supervision: they have not happened yet.
    """
    end = min(last, today)
    return end if end >= first else None


def day_rate(vcpu: int, mem_gb: int, storage_gb: int, vcpu_day: Decimal, mem_gb_day: Decimal,
             storage_gb_day: Decimal) -> Decimal:  # fmt: skip
    """Yuan per day of one spec at one price version (exact, not rounded)."""
    return vcpu * vcpu_day + mem_gb * mem_gb_day + storage_gb * storage_gb_day


class Line(NamedTuple):
    """A run of contiguous days of one resource with one status, price version and spec.

    Immutable. A named tuple rather than a frozen dataclass because an annual assessment builds one
    per run, tens of thousands, and a frozen dataclass takes several times as long to construct.
    """

    resource_id: str
    name: str
    unit_id: str
    status: str  # billable | unsupervised | unqualified | no_price
    version_id: str
    first_day: date
    last_day: date
    days: int
    vcpu: int
    mem_gb: int
    storage_gb: int
    vcpu_day: Decimal
    mem_gb_day: Decimal
    storage_gb_day: Decimal
    day_rate: Decimal
    amount: Decimal  # days × day_rate, rounded once to 0.01 yuan
    completeness_pct: float
    judgement_id: str = ""
    judgement_reason: str = ""
    resource_class: str = "standard"  # the class in force on these days (its price list)


#: unit prices of a price-list version: (vcpu_day, mem_gb_day, storage_gb_day)
Prices = tuple[Decimal, Decimal, Decimal]
_NO_PRICE: Prices = (Decimal(0), Decimal(0), Decimal(0))


def _prices_of(run: Mapping[str, Any], prices: Mapping[str, Prices] | None) -> Prices:
    """The unit prices of a run: its own columns when it has them, else its version's from ``prices``."""
    version = run["version_id"]
    if not version:
        return _NO_PRICE
    if run.get("vcpu_day") is not None:
        return Decimal(run["vcpu_day"]), Decimal(run["mem_gb_day"]), Decimal(run["storage_gb_day"])
    if prices is None or version not in prices:
        raise ValueError(f"no unit prices for price version {version!r}")
    return prices[version]


_RUN_FIELDS = itemgetter("resource_id", "name", "unit_id", "status", "version_id", "first_day", "last_day", "days",
                         "vcpu", "mem_gb", "storage_gb", "samples_counted", "samples_expected")  # fmt: skip


def lines_from_runs(runs: Iterable[Mapping[str, Any]], prices: Mapping[str, Prices] | None = None) -> list[Line]:
    """Line items from the rows of sql/reports/assessment_lines.sql (``prices``: version_id → unit prices,
    sql/reports/assessment_prices.sql, for rows that do not carry their own).

    An annual assessment has tens of thousands of runs, so per run only what differs per run is done:
    the day rate of a (version, spec) and the rounded amount of a (day rate, days) are computed once
    and reused — the same Decimal arithmetic, not repeated.
    """
    rates: dict[tuple[Any, ...], tuple[int, int, int, Prices, Decimal, dict[int, Decimal]]] = {}
    out: list[Line] = []
    append = out.append
    for run in runs:
        rid, name, unit_id, status, version, first, last, days, vcpu, mem_gb, storage_gb, counted, expected = (
            _RUN_FIELDS(run))  # fmt: skip
        own = run.get("vcpu_day")
        key: tuple[Any, ...] = (version, vcpu, mem_gb, storage_gb)
        if own is not None:
            key += (own, run["mem_gb_day"], run["storage_gb_day"])
        hit = rates.get(key)
        if hit is None:
            spec = int(vcpu), int(mem_gb), int(storage_gb)
            unit = _prices_of(run, prices)
            hit = rates[key] = (*spec, unit, day_rate(*spec, *unit), {})
        vcpu, mem_gb, storage_gb, unit, rate, amounts = hit
        days = int(days)
        amount = amounts.get(days)
        if amount is None:
            amount = amounts[days] = to_yuan(days * rate)
        counted, expected = float(counted), float(expected)
        if counted == expected and expected:
            completeness = 100.0  # what the rounding below gives; the common case, and round() is slow
        else:
            completeness = round(100.0 * counted / expected, 2) if expected else 0.0
        append(Line(
            rid, name or rid, unit_id or "", status, version, first, last, days, vcpu, mem_gb, storage_gb, *unit, rate,
            amount, completeness, run.get("judgement_id") or "", run.get("judgement_reason") or "",
            run.get("resource_class") or "standard",
        ))  # fmt: skip
    return out


def line_from_run(run: Mapping[str, Any], prices: Mapping[str, Prices] | None = None) -> Line:
    """A line item from one row of sql/reports/assessment_lines.sql."""
    return lines_from_runs([run], prices)[0]


@dataclass(frozen=True, slots=True)
class Totals:
    """gross − excluded = billable; billable − deduction = net (yuan)."""

    gross: Decimal
    excluded: Decimal
    billable: Decimal
    deduction_pct: Decimal
    deduction: Decimal
    net: Decimal


@dataclass(frozen=True, slots=True)
class Assessment:
    """One provider's fee assessment for [period_from, period_to]."""

    provider_id: str
    period_from: date
    period_to: date
    generated_at: datetime
    supervision_threshold_pct: Decimal
    lines: tuple[Line, ...]  # billable
    exclusions: tuple[Line, ...]  # unsupervised, unqualified, no price
    unregistered: tuple[Mapping[str, Any], ...]
    deduction: Deduction
    figures: SlaFigures
    totals: Totals
    telemetry_completeness_pct: float | None  # computed from the rollups of these very days
    as_of: date | None = None  # "today" (Asia/Shanghai) when assessed: later days are not counted
    period_to_effective: date | None = None  # min(period_to, as_of); None: the period has not begun

    @property
    def provisional(self) -> bool:
        """True while some SLA figure is missing: the deduction, and so the net, are not final."""
        return bool(self.deduction.missing)


def completeness_pct(runs: Iterable[Mapping[str, Any]]) -> float | None:
    """Telemetry completeness over every in-service resource-day of the runs (capped per day), %."""
    got = expected = 0.0
    for r in runs:
        got += float(r["samples_counted"])
        expected += float(r["samples_expected"])
    return round(100.0 * got / expected, 2) if expected else None


def assess(
    provider_id: str, period_from: date, period_to: date, runs: Iterable[Mapping[str, Any]],
    unregistered: Iterable[Mapping[str, Any]], scheme: DeductionScheme, figures: SlaFigures, generated_at: datetime,
    as_of: date | None = None, prices: Mapping[str, Prices] | None = None,
) -> Assessment:  # fmt: skip
    """Assemble line items, exclusions, the deduction and the totals from the assessment queries
    (``prices``: the unit prices of each version, for runs that do not carry their own)."""
    runs = runs if isinstance(runs, list) else list(runs)
    lines = lines_from_runs(runs, prices)
    billable = tuple(x for x in lines if x.status == "billable")
    excluded = tuple(x for x in lines if x.status != "billable")
    ded = deduction(scheme, figures)
    billable_sum = sum((x.amount for x in billable), Decimal("0.00"))
    excluded_sum = sum((x.amount for x in excluded), Decimal("0.00"))
    ded_amount = to_yuan(billable_sum * ded.pct / 100)
    totals = Totals(billable_sum + excluded_sum, excluded_sum, billable_sum, ded.pct, ded_amount, billable_sum - ded_amount)
    return Assessment(provider_id, period_from, period_to, generated_at, scheme.supervision_threshold_pct, billable,
                      excluded, tuple(unregistered), ded, figures, totals, completeness_pct(runs), as_of,
                      effective_to(period_from, period_to, as_of) if as_of else period_to)  # fmt: skip
