"""Fee arithmetic without services: rounding, price-list rules, the deduction scheme and the totals."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from opscenter import fees
from opscenter.datafile import DataFileError

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
TODAY = date(2026, 3, 1)
SCHEME_TEXT = fees.DEFAULT_SCHEME_FILE.read_text(encoding="utf-8")


def scheme() -> fees.DeductionScheme:
    return fees.scheme_from_text(SCHEME_TEXT, "deduction.yaml")


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [("107.625", "107.63"), ("2.625", "2.63"), ("2.615", "2.62"), ("406.5381", "406.54"), ("0.004", "0.00"),
     ("903.418", "903.42"), ("-0.005", "-0.01")],
)  # fmt: skip
def test_to_yuan_rounds_half_up_once(amount: str, rounded: str) -> None:
    assert str(fees.to_yuan(Decimal(amount))) == rounded


def version(vid: str, frm: date, to: date | None = None, cls: str = "standard", **kw: Any) -> fees.PriceVersion:
    return fees.PriceVersion(vid, cls, frm, to, Decimal(1), Decimal("0.5"), Decimal("0.01"), **kw)


EXISTING = [version("open", date(2026, 1, 1)), version("bounded", date(2026, 6, 1), date(2026, 7, 1)),
            version("other-class", date(2026, 4, 1), cls="gpu")]  # fmt: skip


@pytest.mark.parametrize(
    ("frm", "to", "ok"),
    [
        (date(2026, 3, 1), None, True),  # today: supersedes the open version from today on
        (date(2026, 4, 1), None, True),  # another class's start does not clash
        (date(2026, 7, 1), None, True),  # right where the bounded one ends (exclusive end)
        (date(2026, 3, 10), date(2026, 6, 1), True),  # ends where the bounded one starts
        (date(2026, 2, 28), None, False),  # yesterday: the past
        (date(2026, 6, 1), None, False),  # same start as bounded
        (date(2026, 6, 15), None, False),  # inside bounded
        (date(2026, 3, 10), date(2026, 6, 2), False),  # contains bounded's start
        (date(2026, 1, 1), None, False),  # same start as open (and in the past)
    ],
)  # fmt: skip
def test_new_version_never_rewrites_the_past_nor_overlaps(frm: date, to: date | None, ok: bool) -> None:
    new = version("new", frm, to)
    if ok:
        fees.check_new_version(new, EXISTING, TODAY)
    else:
        with pytest.raises(fees.PriceError) as exc:
            fees.check_new_version(new, EXISTING, TODAY)
        assert exc.value.field == "valid_from" and exc.value.zh and exc.value.en


def test_a_correction_may_reach_into_the_past_only_with_a_reason() -> None:
    with pytest.raises(fees.PriceError, match="reason"):
        fees.check_new_version(version("c", date(2025, 1, 1), correction=True), EXISTING, TODAY)
    fees.check_new_version(version("c", date(2025, 1, 1), correction=True, reason="财政局更正"), EXISTING, TODAY)


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"vcpu_day": -1}, "vcpu_day"), ({"mem_gb_day": "abc"}, "mem_gb_day"), ({"storage_gb_day": "NaN"}, "storage_gb_day"),
     ({"vcpu_day": "0.00001"}, "vcpu_day"), ({"vcpu_day": True}, "vcpu_day"), ({"vcpu_day": None}, "vcpu_day"),
     ({"valid_from": "2026-02-30"}, "valid_from"), ({"valid_to": "2026-03-01"}, "valid_to"),
     ({"valid_from": "2200-01-01"}, "valid_from"), ({"resource_class": "Bad Class"}, "resource_class"),
     ({"correction": "yes"}, "correction"), ({"vcpu_day": "1e9"}, "vcpu_day")],
)  # fmt: skip
def test_parse_price_names_the_bad_field(patch: dict[str, Any], field: str) -> None:
    doc = {"valid_from": "2026-03-01", "vcpu_day": "1.20", "mem_gb_day": 0.45, "storage_gb_day": "0.0125", **patch}
    with pytest.raises(fees.PriceError) as exc:
        fees.parse_price(doc, "v", "finance", NOW)
    assert exc.value.field == field


def test_parse_price_keeps_exact_decimals() -> None:
    v = fees.parse_price({"valid_from": "2026-03-01", "vcpu_day": 0.1, "mem_gb_day": "0.45", "storage_gb_day": 0},
                         "v", "fin", NOW)  # fmt: skip
    assert (v.vcpu_day, v.mem_gb_day, v.storage_gb_day, v.resource_class) == (
        Decimal("0.1000"), Decimal("0.4500"), Decimal("0.0000"), "standard")  # fmt: skip


# -- deduction scheme ---------------------------------------------------------------------------


def test_shipped_scheme_is_valid() -> None:
    s = scheme()
    assert s.cap_pct == 10 and s.supervision_threshold_pct == 90 and s.breach_pct["P1"] == 1


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("cap_pct: 10 ", "cap_pct: 120 ", "cap_pct"),
        ("  - {below: 99.5, deduct_pct: 3}", "  - {below: 99.95, deduct_pct: 3}", "availability.1.below"),
        ("  - {below: 90, deduct_pct: 2}", "  - {below: 90, deduct_pct: 0.5}", "within_target.1.deduct_pct"),
        ("P4: 0.1}", "P5: 0.1}", "breaches.per_breach_pct.P5"),
        ("  max_pct: 5", "  max_pct: five", "breaches.max_pct"),
        ("  scale: [1, 5]", "  scale: [5, 1]", "satisfaction.scale.1"),
        ("supervision_threshold_pct: 90", "supervision_threshold: 90", "supervision_threshold"),
    ],
)  # fmt: skip
def test_scheme_errors_name_file_line_and_field(old: str, new: str, field: str) -> None:
    assert old in SCHEME_TEXT
    line = SCHEME_TEXT[: SCHEME_TEXT.index(old)].count("\n") + 1
    with pytest.raises(DataFileError) as exc:
        fees.scheme_from_text(SCHEME_TEXT.replace(old, new, 1), "deduction.yaml")
    assert (exc.value.source, exc.value.field, exc.value.line) == ("deduction.yaml", field, line)


FULL = fees.SlaFigures(99.7, 92.0, {"P1": 1, "P2": 2, "P3": 0, "P4": 0}, 4.5, 99.68)


@pytest.mark.parametrize(
    ("figures", "pct", "uncapped", "missing"),
    [
        (FULL, "4.5", "4.5", ()),  # 1 + 1 + 0 + 0.5 + (1×1.0 + 2×0.5) = 4.5 (docs/billing.md example)
        (fees.SlaFigures(99.95, 99, {"P1": 0}, 5, 100), "0", "0", ()),  # nothing below any tier
        (fees.SlaFigures(99.9, 95, {}, 4.0, 99.9), "0", "0", ()),  # "below" is strict
        (fees.SlaFigures(98.9, 50, {"P1": 9}, 1, 10), "10", "19", ()),  # 5 + 4 + 5 (breaches max) + 3 + 2 → cap
        (fees.SlaFigures(completeness_pct=99.0), "0.5", "0.5", ("availability_pct", "within_target_pct",
                                                               "satisfaction", "breaches")),
    ],
)
def test_deduction(figures: fees.SlaFigures, pct: str, uncapped: str, missing: tuple[str, ...]) -> None:
    d = fees.deduction(scheme(), figures)
    assert (d.pct, d.uncapped_pct, d.missing) == (Decimal(pct), Decimal(uncapped), missing)


def test_check_figures_flags_out_of_range() -> None:
    bad = fees.SlaFigures(101, -1, {"P9": 1}, 0.5, 50)
    assert fees.check_figures(scheme(), bad) == ["availability_pct", "within_target_pct", "satisfaction", "breaches"]
    assert fees.check_figures(scheme(), FULL) == []


# -- assembly -----------------------------------------------------------------------------------


def run(rid: str, status: str, days: int, spec: tuple[int, int, int], prices: tuple[str, str, str],
        counted: float = 1440.0) -> dict[str, Any]:  # fmt: skip
    return {"resource_id": rid, "name": rid, "unit_id": "u1", "status": status, "version_id": "v1" if prices[0] else "",
            "vcpu": spec[0], "mem_gb": spec[1], "storage_gb": spec[2], "vcpu_day": Decimal(prices[0] or 0),
            "mem_gb_day": Decimal(prices[1] or 0), "storage_gb_day": Decimal(prices[2] or 0), "judgement_id": "",
            "judgement_reason": "", "first_day": date(2025, 1, 1), "last_day": date(2025, 1, 1) + timedelta(days=days - 1), "days": days,
            "samples_counted": counted * days, "samples_expected": 1440.0 * days}  # fmt: skip


def test_assess_totals_waterfall() -> None:
    runs = [
        run("a3", "billable", 41, (1, 2, 50), ("1", "0.5", "0.0125")),  # 41 × 2.625 = 107.625 → 107.63
        run("a3", "unqualified", 20, (1, 2, 50), ("1", "0.5", "0.0125")),  # 52.50
        run("a1", "unsupervised", 10, (2, 4, 100), ("1", "0.5", "0.0125"), counted=1000.0),  # 52.50
        run("a1", "no_price", 3, (2, 4, 100), ("", "", "")),  # 0.00
    ]
    a = fees.assess("pA", date(2025, 1, 1), date(2025, 12, 31), runs, [], scheme(), FULL, NOW)
    assert [x.amount for x in a.lines] == [Decimal("107.63")]
    assert [(x.status, x.amount) for x in a.exclusions] == [
        ("unqualified", Decimal("52.50")), ("unsupervised", Decimal("52.50")), ("no_price", Decimal("0.00"))]  # fmt: skip
    t = a.totals
    # billable 107.63 × 4.5 % = 4.84335 → 4.84; net 102.79; gross 107.63 + 105.00 = 212.63
    assert (t.gross, t.excluded, t.billable, t.deduction, t.net) == (
        Decimal("212.63"), Decimal("105.00"), Decimal("107.63"), Decimal("4.84"), Decimal("102.79"))  # fmt: skip
    assert t.gross == t.excluded + t.billable and t.net == t.billable - t.deduction
    # completeness over every run's days: (74 × 1440 − 10 × 440) / (74 × 1440) = 95.87 %
    assert a.telemetry_completeness_pct == 95.87 and not a.provisional
