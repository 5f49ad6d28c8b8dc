"""The fast assessment query gives exactly the runs of the day-by-day one (issue #9 item 4, issue #7).

sql/reports/assessment_lines.sql cuts each resource's days into intervals instead of expanding every
resource-day; tests/integration/assessment_lines_reference.sql keeps the former day-by-day query, the
plain form of the rules in docs/billing.md. Both run here against real chDB on random provider-years
(seeded, so a failure can be replayed) full of what makes the rules bite: spec changes (some to the
same spec), class changes (one class never priced), deliveries before the first spec, deregistrations,
price changes and overlapping corrections, resource and provider-wide judgements (overlapping, one
withdrawn), days below the supervision threshold, exactly at it, a little short or over, missing
stretches, rollups in unmerged parts, intervals that do not divide a day, and "today" inside the period.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import sql
from opscenter import fees, store
from opscenter.settings import Settings

REFERENCE = Path(__file__).with_name("assessment_lines_reference.sql")
YEAR0 = date(2025, 1, 1)
PROVIDER = "pR"
LIFECYCLE_COLUMNS = ["event_id", "resource_id", "type", "ts", "provider_id", "unit_id", "district_id", "vcpu", "mem_gb",
                     "storage_gb", "resource_class"]  # fmt: skip
INVENTORY_COLUMNS = ["resource_id", "provider_id", "unit_id", "district_id", "name", "vcpu", "mem_gb", "storage_gb",
                     "state", "interval_s", "updated", "version"]  # fmt: skip
FLOATS = ("samples_counted", "samples_expected", "min_completeness")
Rows = list[dict[str, Any]]


@pytest.fixture
def client(settings: Settings) -> Iterator[Any]:
    c = store.connect(settings)
    store.migrate(c, settings)
    yield c


def day(n: int) -> date:
    return YEAR0 + timedelta(days=n)


def at(n: int, hour: float) -> datetime:
    """UTC time ``hour`` hours into day ``n`` of 2025 (UTC): from 16:00 on it is the next day in Weihai."""
    return datetime.combine(day(n), datetime.min.time(), timezone.utc) + timedelta(hours=hour)


def seed_provider_year(c: Any, seed: int) -> int:
    """A random year of provider pR (and a little of another provider); returns the number of resources."""
    rnd = random.Random(seed)
    events: list[list[Any]] = []
    inventory: list[list[Any]] = []
    rollups: list[list[Any]] = []
    specs = [(2, 4, 100), (4, 8, 100), (8, 16, 500), (1, 2, 50)]
    n_res = 36
    for i in range(n_res):
        rid = f"r{i:02d}"
        spec = rnd.choice(specs)
        hour = rnd.choice([2.0, 15.5, 16.5, 23.0])  # across the UTC / Asia-Shanghai day line
        start = rnd.choice([-200, -3, 0, rnd.randrange(1, 330)])
        seq = 0

        def ev(type_: str, n: int, h: float, sp: tuple[int, int, int] | None, cls: str = "") -> None:
            nonlocal seq
            seq += 1
            events.append([f"{rid}-{seq}", rid, type_, at(n, h + seq / 1000), PROVIDER, "u1", "d1",
                           *(sp or (None, None, None)), cls])  # fmt: skip

        kind = i % 9
        if kind == 0:  # applied with the spec, delivered without one (the spec counts from the application)
            ev("applied", start - 5, hour, spec)
            ev("delivered", start, hour, None, rnd.choice(["", "gpu"]))
        elif kind == 1:  # delivered before its first spec: the days before it are not billed
            ev("delivered", start, hour, None)
            ev("adjusted", start + rnd.randrange(3, 40), hour, spec)
        elif kind == 2:  # delivered and never given a spec: never billed
            ev("delivered", start, hour, None)
        else:
            ev("delivered", start, hour, spec, rnd.choice(["", "", "gpu", "fpga", "standard"]))
        n = max(start, 0)
        for _ in range(rnd.randrange(0, 5)):  # adjustments: spec, class, both, or the same spec again
            n += rnd.randrange(1, 90)
            if n > 364:
                break
            what = rnd.random()
            new_spec = rnd.choice(specs) if what < 0.4 else spec if what < 0.55 else None
            cls = rnd.choice(["gpu", "standard", "fpga"]) if what > 0.45 else ""
            ev("adjusted", n, rnd.choice([1.0, 17.0]), new_spec, cls)
            if rnd.random() < 0.2:  # a second change the same (local) day: the last one wins
                ev("adjusted", n, 3.0, rnd.choice(specs), "")
        if rnd.random() < 0.3:
            ev("deregistered", rnd.randrange(max(start, 0) + 1, 400), hour, None)
        interval_s = rnd.choice([60, 60, 60, 30, 300, 7, 0])  # 7 does not divide a day; 0 counts as 1 s
        if i != 5:  # r05 is missing from the inventory (its name is its id, its interval 60 s)
            inventory.append([rid, PROVIDER, f"u{i % 3}", "d1", f"{rid} 系统", *spec, "delivered", interval_s,
                              at(0, 0), 1])  # fmt: skip
        expected = 86400 // max(interval_s, 1) if interval_s != 7 else 12342
        d = rnd.randrange(-5, 60)
        while d < 366:
            pattern = rnd.random()
            length = rnd.randrange(1, 40)
            for k in range(d, min(d + length, 366)):
                if pattern < 0.55:
                    got = expected  # exactly as expected
                elif pattern < 0.7:
                    got = expected - rnd.randrange(1, max(2, expected // 20))  # a little short, still supervised
                elif pattern < 0.76:
                    got = rnd.randrange(0, int(expected * 0.9))  # below the threshold
                elif pattern < 0.8:
                    got = expected * 9 // 10  # at the threshold (90 %, exactly where it divides): still supervised
                elif pattern < 0.85:
                    got = expected + rnd.randrange(1, 50)  # more than expected (duplicates)
                else:
                    continue  # no rollup row at all
                if rnd.random() < 0.05 and got > 1:  # not merged yet: two parts of one day
                    part = rnd.randrange(1, got)
                    rollups += [[day(k), PROVIDER, rid, part, 0], [day(k), PROVIDER, rid, got - part, 0]]
                else:
                    rollups.append([day(k), PROVIDER, rid, got, 0])
            d += length + (rnd.randrange(0, 20) if rnd.random() < 0.3 else 0)
    rollups += [[day(k), "pOther", "r01", 5, 0] for k in range(0, 365, 3)]  # another provider's: not counted
    rollups += [[day(k), PROVIDER, "ghost", 1440, 0] for k in range(10)]  # never delivered: not billed
    c.insert("lifecycle_events", events, column_names=LIFECYCLE_COLUMNS)
    c.insert("inventory", inventory, column_names=INVENTORY_COLUMNS)
    c.insert("rollup_1d", rollups, column_names=["day", "provider_id", "resource_id", "samples", "late"])

    created = datetime(2026, 1, 10, tzinfo=timezone.utc)
    prices = [  # (id, class, from, to, vcpu, mem, storage, created +days)
        ("v-std-1", "standard", day(0), None, "1.0000", "0.5000", "0.0125", 0),
        ("v-std-2", "standard", day(181), None, "1.2000", "0.4500", "0.0125", 0),
        ("v-std-fix", "standard", day(59), day(90), "0.9000", "0.5000", "0.0100", 3),  # a correction, created later
        ("v-std-fix2", "standard", day(70), day(75), "0.8000", "0.5000", "0.0100", 5),  # overlapping the correction
        ("v-gpu-1", "gpu", day(31), day(305), "3.0000", "0.5000", "0.0100", 1),  # no gpu price outside
    ]
    c.insert("price_versions", [[v, cls, f, t, Decimal(a), Decimal(b), Decimal(s), 1, "test", "finance",
                                 created + timedelta(days=k)] for v, cls, f, t, a, b, s, k in prices],
             column_names=["version_id", "resource_class", "valid_from", "valid_to", "vcpu_day", "mem_gb_day",
                           "storage_gb_day", "correction", "reason", "created_by", "created_at"])  # fmt: skip
    judgements = []
    for j in range(14):
        rid = "" if j % 5 == 0 else f"r{rnd.randrange(n_res):02d}"  # every fifth is provider-wide
        lo = rnd.randrange(-10, 360)
        judgements.append([f"j{j:02d}", "judge", PROVIDER, rid, day(lo), day(lo + rnd.randrange(0, 30)),
                           f"理由 {j}", "bureau", created])  # fmt: skip
    judgements.append(["j03", "withdraw", PROVIDER, judgements[3][3], day(0), day(0), "撤销", "bureau",
                       created + timedelta(days=1)])  # fmt: skip
    judgements.append(["jX", "judge", "pOther", "", day(0), day(364), "另一家", "bureau", created])
    c.insert("service_judgements", judgements, column_names=["judgement_id", "action", "provider_id",
                                                              "resource_id", "from_day", "to_day", "reason", "actor",
                                                              "ts"])  # fmt: skip
    return n_res


def runs(c: Any, text: str, params: dict[str, Any]) -> Rows:
    res = c.query(text, parameters=params)
    return [dict(zip(res.column_names, row)) for row in res.result_rows]


def assert_same_runs(new: Rows, old: Rows, prices: dict[str, tuple[Decimal, ...]]) -> None:
    assert len(new) == len(old)
    for n, o in zip(new, old):
        unit = prices[n["version_id"]] if n["version_id"] else (Decimal(0), Decimal(0), Decimal(0))
        assert (unit[0], unit[1], unit[2]) == (o["vcpu_day"], o["mem_gb_day"], o["storage_gb_day"]), o
        for k, v in o.items():
            if k in FLOATS:
                assert math.isclose(n[k], v, rel_tol=1e-12, abs_tol=1e-9), (k, n, o)
            elif k not in ("vcpu_day", "mem_gb_day", "storage_gb_day"):
                assert n[k] == v, (k, n, o)


@pytest.mark.parametrize("seed", [7, 2025, 31337])
def test_fast_query_gives_the_reference_runs(client: Any, seed: int) -> None:
    n_res = seed_provider_year(client, seed)
    fast, reference = sql.report("assessment_lines"), REFERENCE.read_text(encoding="utf-8")
    prices = {r[0]: tuple(r[1:]) for r in client.query(sql.report("assessment_prices")).result_rows}
    scheme_ = fees.scheme_from_text((Path(fees.DEFAULT_SCHEME_FILE)).read_text(encoding="utf-8"), "deduction.yaml")
    figures = fees.SlaFigures(availability_pct=99.5, within_target_pct=90.0, breaches={"P1": 1}, satisfaction=4.2)
    now = datetime(2026, 2, 1, tzinfo=timezone.utc)
    periods = [
        ("year, assessed later", day(0), day(364), day(400), 86400.0),
        ("year to date: today 09-15, 10 h gone", day(0), day(257), day(257), 36000.0),
        ("a stretch in the middle", day(68), day(190), day(400), 86400.0),
        ("today is the first day", day(100), day(100), day(100), 3600.0),
    ]
    seen: set[str] = set()
    for label, first, last, today, today_s in periods:
        params = {"provider": PROVIDER, "from": first, "to": last, "today": today, "today_s": today_s, "threshold": 0.9}
        new, old = runs(client, fast, params), runs(client, reference, params)
        assert new and len(new) == len(old), label
        assert_same_runs(new, old, prices)
        # and the assessment built from each is the same, to the fen
        a_new = fees.assess(PROVIDER, first, last, new, [], scheme_, figures, now, prices=prices)
        a_old = fees.assess(PROVIDER, first, last, old, [], scheme_, figures, now)
        assert (a_new.lines, a_new.exclusions, a_new.totals) == (a_old.lines, a_old.exclusions, a_old.totals), label
        assert a_new.telemetry_completeness_pct == a_old.telemetry_completeness_pct
        seen |= {r["status"] for r in new}
        if label.startswith("year, assessed later"):
            year = new
    # the random year exercised what it is meant to
    assert seen == {"billable", "unsupervised", "unqualified", "no_price"}
    assert {r["resource_class"] for r in year} >= {"standard", "gpu", "fpga"}
    assert {r["version_id"] for r in year} >= {"v-std-1", "v-std-2", "v-std-fix", "v-std-fix2", "v-gpu-1", ""}
    assert any(r["judgement_id"] in ("j00", "j05", "j10") for r in year)  # provider-wide judgements
    assert not any(r["judgement_id"] == "j03" for r in year)  # withdrawn
    assert len({r["resource_id"] for r in year}) < n_res  # some resources are never billed
    assert any(r["status"] == "billable" and r["days"] > 1 and r["samples_counted"] < r["samples_expected"]
               for r in year)  # a run spanning days a little short  # fmt: skip
