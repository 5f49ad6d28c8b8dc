"""Line items of the fee assessment built fast (issue #9 item 4): the runs of the query carry only their
price version (unit prices come once per version), day rates and amounts are computed once per distinct
value, and the JSON of a line is written out field by field — with exactly the results of the plain way."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from dashboard.billing_assessment import assessment_doc
from dashboard.billing_common import jsonable
from opscenter import fees

PRICES = {"v1": (Decimal("1.0000"), Decimal("0.5000"), Decimal("0.0125")),
          "v2": (Decimal("1.2000"), Decimal("0.4500"), Decimal("0.0125"))}  # fmt: skip
NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def run(rid: str, status: str, version: str, first: int, days: int, spec: tuple[int, int, int],
        counted: float = 1440.0, expected: float = 1440.0, **extra: Any) -> dict[str, Any]:  # fmt: skip
    """One row as sql/reports/assessment_lines.sql returns it: no unit prices, only the version."""
    d0 = date(2025, 1, 1) + timedelta(days=first)
    return {"resource_id": rid, "name": f"{rid} 系统", "unit_id": "u1", "status": status, "version_id": version,
            "resource_class": "standard", "vcpu": spec[0], "mem_gb": spec[1], "storage_gb": spec[2],
            "judgement_id": "", "judgement_reason": "", "first_day": d0, "last_day": d0 + timedelta(days=days - 1),
            "days": days, "samples_counted": counted * days, "samples_expected": expected * days,
            "min_completeness": counted / expected, **extra}  # fmt: skip


RUNS = [
    run("a1", "billable", "v1", 0, 40, (2, 4, 100)),
    run("a1", "unsupervised", "v1", 40, 10, (2, 4, 100), counted=1000.0),
    run("a1", "billable", "v1", 50, 40, (2, 4, 100), counted=1439.0),
    run("a3", "billable", "v1", 140, 41, (1, 2, 50)),  # 41 × 2.625 = 107.625 → 107.63
    run("a3", "unqualified", "v1", 120, 20, (1, 2, 50), judgement_id="j1", judgement_reason="整改"),
    run("a3", "billable", "v2", 181, 184, (1, 2, 50)),
    run("a9", "no_price", "", 0, 3, (2, 4, 100), resource_class="fpga"),
    run("a9", "billable", "v2", 200, 40, (2, 4, 100), name="", unit_id=None),  # no inventory row
]


def plain_line(r: dict[str, Any]) -> fees.Line:
    """The line as the assessment computed it before it was made fast (prices on the run, no reuse)."""
    prices = [Decimal(r[k]) if r["version_id"] else Decimal(0) for k in ("vcpu_day", "mem_gb_day", "storage_gb_day")]
    rate = fees.day_rate(int(r["vcpu"]), int(r["mem_gb"]), int(r["storage_gb"]), *prices)
    expected = float(r["samples_expected"])
    return fees.Line(r["resource_id"], r["name"] or r["resource_id"], r["unit_id"] or "", r["status"],
                     r["version_id"], r["first_day"], r["last_day"], int(r["days"]), int(r["vcpu"]), int(r["mem_gb"]),
                     int(r["storage_gb"]), *prices, rate, fees.to_yuan(int(r["days"]) * rate),
                     round(100.0 * float(r["samples_counted"]) / expected, 2) if expected else 0.0,
                     r.get("judgement_id") or "", r.get("judgement_reason") or "",
                     r.get("resource_class") or "standard")


def with_prices(r: dict[str, Any]) -> dict[str, Any]:
    unit = PRICES.get(r["version_id"], (Decimal("0.0000"),) * 3)
    return {**r, "vcpu_day": unit[0], "mem_gb_day": unit[1], "storage_gb_day": unit[2]}


def test_lines_from_version_prices_equal_the_plain_computation() -> None:
    fast = fees.lines_from_runs(RUNS, PRICES)
    assert fast == [plain_line(with_prices(r)) for r in RUNS]
    # rows that carry their own prices (as the unit tests' and the former query's) give the same lines
    assert fees.lines_from_runs([with_prices(r) for r in RUNS]) == fast
    assert [str(x.day_rate) for x in fast[:4]] == ["5.2500", "5.2500", "5.2500", "2.6250"]
    assert [str(x.amount) for x in fast] == ["210.00", "52.50", "210.00", "107.63", "52.50", "501.40", "0.00", "218.00"]
    assert [x.completeness_pct for x in fast[:3]] == [100.0, 69.44, 99.93]
    assert (fast[6].day_rate, fast[6].resource_class, fast[7].name, fast[7].unit_id) == (Decimal(0), "fpga", "a9", "")


def test_a_run_of_an_unknown_version_is_an_error_not_a_free_day() -> None:
    with pytest.raises(ValueError, match="v9"):
        fees.lines_from_runs([run("a1", "billable", "v9", 0, 1, (1, 1, 1))], PRICES)


def test_line_json_is_what_generic_conversion_gives() -> None:
    scheme = fees.scheme_from_text(fees.DEFAULT_SCHEME_FILE.read_text(encoding="utf-8"), "deduction.yaml")
    a = fees.assess("pA", date(2025, 1, 1), date(2025, 12, 31), RUNS, [], scheme, fees.SlaFigures(), NOW,
                    as_of=date(2026, 3, 1), prices=PRICES)  # fmt: skip
    doc = assessment_doc(a)
    for key, lines in (("lines", a.lines), ("exclusions", a.exclusions)):
        expected = []
        for x in lines:
            d = jsonable(x._asdict())
            if x.status != "billable":
                d["reason_zh"], d["reason_en"] = fees.EXCLUSION_REASONS[x.status]
            expected.append(d)
        assert doc[key] == expected
        assert [list(d) for d in doc[key]] == [list(d) for d in expected]  # the same fields in the same order
    assert doc["totals"]["billable"] == "1247.03" and doc["totals"]["excluded"] == "105.00"  # 210+210+107.63+501.40+218


def test_line_stays_immutable() -> None:
    x = fees.lines_from_runs(RUNS[:1], PRICES)[0]
    with pytest.raises(AttributeError):
        x.amount = Decimal(0)  # type: ignore[misc]
    assert not dataclasses.is_dataclass(x) and x._fields[0] == "resource_id"
