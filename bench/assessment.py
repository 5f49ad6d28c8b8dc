"""Time the annual fee assessment over daily rollups: 5,000 resources × 1 year on embedded chDB.

Seeds a private chDB path (inventory, lifecycle with adjustments and deregistrations, one
rollup_1d row per resource-day, a mid-year price change and a correction, judgements, dead
letters), then times ``sql/reports/assessment_lines.sql`` + ``assessment_unregistered.sql``, the
whole assessment (queries + fees.assess, ``run_assessment``) and the JSON the API answers with,
prints a table with the goal beside the figures and writes JSON to bench/results/assessment.json.
In the same run, on the same data, it times the former day-by-day query (kept as the reference of
tests/integration/assessment_lines_reference.sql) and checks that both give the same runs.

    python bench/assessment.py [--resources 5000] [--runs 5] [--reference-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sql
from dashboard.api_billing import assessment_doc, load_scheme, run_assessment
from dashboard.billing_assessment import FastJSONResponse, gc_paused
from opscenter import __version__, store
from opscenter.fees import Assessment
from opscenter.settings import Settings

PROVIDER = "bench-p1"
YEAR = 2025
GOAL_S = 1.0  # issue #9, item 4
ROOT = Path(__file__).resolve().parents[1]
REFERENCE_SQL = ROOT / "tests" / "integration" / "assessment_lines_reference.sql"


def seed(client, n: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Insert a year of one provider with ``n`` resources; return the row counts."""
    p = {"p": PROVIDER, "n": n, "y0": date(YEAR, 1, 1)}
    client.command(
        "INSERT INTO inventory (resource_id, provider_id, unit_id, district_id, name, vcpu, mem_gb, storage_gb, state, "
        "interval_s, updated, version) SELECT concat('r', toString(number)), {p:String}, concat('u', toString(number % 40)), "
        "'d1', concat('r', toString(number)), 4, 8, 100, 'delivered', 60, now64(3), 1 FROM numbers({n:UInt32})",
        parameters=p,
    )  # fmt: skip
    # delivered: 80 % before the year, 20 % during it; 20 % adjusted in June; 10 % deregistered in the autumn
    client.command(
        "INSERT INTO lifecycle_events (event_id, resource_id, type, ts, provider_id, unit_id, district_id, vcpu, mem_gb, "
        "storage_gb) SELECT concat('d', toString(number)), concat('r', toString(number)), 'delivered', "
        "if(number % 5 = 0, toDateTime64({y0:Date}, 3) + toIntervalDay(number % 300), toDateTime64('2024-06-01', 3)), "
        "{p:String}, 'u1', 'd1', 2 + number % 8, 4 + number % 16, 50 + number % 500 FROM numbers({n:UInt32})",
        parameters=p,
    )  # fmt: skip
    client.command(
        "INSERT INTO lifecycle_events (event_id, resource_id, type, ts, provider_id, unit_id, district_id, vcpu, mem_gb, "
        "storage_gb) SELECT concat('a', toString(number)), concat('r', toString(number)), 'adjusted', "
        "toDateTime64('2025-06-15 03:00:00', 3), {p:String}, 'u1', 'd1', 16, 32, 1000 FROM numbers({n:UInt32}) "
        "WHERE number % 5 = 1",
        parameters=p,
    )  # fmt: skip
    client.command(
        "INSERT INTO lifecycle_events (event_id, resource_id, type, ts, provider_id, unit_id, district_id) "
        "SELECT concat('x', toString(number)), concat('r', toString(number)), 'deregistered', "
        "toDateTime64('2025-10-01 03:00:00', 3) + toIntervalDay(number % 60), {p:String}, 'u1', 'd1' "
        "FROM numbers({n:UInt32}) WHERE number % 10 = 3",
        parameters=p,
    )  # fmt: skip
    # one daily rollup row per resource-day; ~2 % of days below the supervision threshold
    client.command(
        "INSERT INTO rollup_1d (day, provider_id, resource_id, samples, late, cpu_sum, cpu_max, cpu_q) "
        "SELECT {y0:Date} + intDiv(number, {n:UInt32}), {p:String}, concat('r', toString(number % {n:UInt32})), "
        "if(cityHash64(number) % 50 = 0, 600, 1440), 0, 40 * 1440, 90, "
        "arrayReduce('quantileTDigestState(0.95)', [toFloat32(60)]) FROM numbers({n:UInt32} * 365)",
        parameters=p,
    )  # fmt: skip
    now = datetime.now(timezone.utc)
    cols = ["version_id", "resource_class", "valid_from", "valid_to", "vcpu_day", "mem_gb_day", "storage_gb_day",
            "correction", "reason", "created_by", "created_at"]  # fmt: skip
    client.insert("price_versions", [
        ["pv-1", "standard", date(YEAR, 1, 1), None, Decimal("1.0"), Decimal("0.5"), Decimal("0.0125"), 1, "bench", "b", now],
        ["pv-2", "standard", date(YEAR, 7, 1), None, Decimal("1.2"), Decimal("0.45"), Decimal("0.0125"), 1, "bench", "b", now],
        ["pv-3", "standard", date(YEAR, 3, 1), date(YEAR, 4, 1), Decimal("0.9"), Decimal("0.5"), Decimal("0.01"), 1, "fix", "b",
         now],
    ], column_names=cols)  # fmt: skip
    client.command(
        "INSERT INTO service_judgements SELECT concat('j', toString(number)), 'judge', {p:String}, "
        "concat('r', toString(number * 97)), toDate('2025-05-01'), toDate('2025-05-10'), 'bench', 'b', now64(3) "
        "FROM numbers(50)",
        parameters=p,
    )  # fmt: skip
    client.command(
        "INSERT INTO deadletters SELECT now64(3), 'unregistered_resource', '', {p:String}, 'b', "
        "concat('{\"resource_id\":\"ghost-', toString(number % 100), '\",\"ts\":\"2025-0', toString(1 + number % 9), "
        "'-10T03:00:00+00:00\"}'), 'telemetry.v1', 0, number, 0 FROM numbers(10000)",
        parameters=p,
    )  # fmt: skip
    counts = {}
    for t in ("inventory", "lifecycle_events", "rollup_1d", "price_versions", "service_judgements", "deadletters"):
        counts[t] = int(client.query(f"SELECT count() FROM {t}").result_rows[0][0])  # table names are constants
    return counts


def timed(fn, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def figures(seconds: list[float]) -> dict[str, float]:
    """Median, min and max of some timings, in seconds."""
    return {"median": round(statistics.median(seconds), 3), "min": round(min(seconds), 3),
            "max": round(max(seconds), 3)}  # fmt: skip


def same_runs(new: list[dict], old: list[dict], prices: dict[str, tuple]) -> bool:  # type: ignore[type-arg]
    """The product query's runs equal the reference query's (prices by version; sample sums to 1e-9)."""
    if len(new) != len(old):
        return False
    for n, o in zip(new, old):
        n = {**n, **dict(zip(("vcpu_day", "mem_gb_day", "storage_gb_day"), prices.get(n["version_id"], (0, 0, 0))))}
        for k, v in o.items():
            w = n[k]
            if isinstance(v, float) and abs(v - w) > 1e-9 * max(1.0, abs(v)) or not isinstance(v, float) and v != w:
                return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resources", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--reference-runs", type=int, default=3, help="timings of the slow reference query (0: skip it)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "assessment.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-assessment-"))
    try:
        settings = Settings(clickhouse_dsn=f"chdb://{work / 'chdb'}", clickhouse_database="bench", data_dir=work,
                            demo=False)  # fmt: skip
        client = store.connect(settings)
        store.migrate(client, settings)
        t0 = time.perf_counter()
        counts = seed(client, args.resources)
        seed_s = time.perf_counter() - t0
        params = {"provider": PROVIDER, "from": date(YEAR, 1, 1), "to": date(YEAR, 12, 31), "threshold": 0.9,
                  "today": date.today(), "today_s": 86400.0}  # a past year: today is outside it
        lines_sql, unreg_sql = sql.report("assessment_lines"), sql.report("assessment_unregistered")
        res = client.query(lines_sql, parameters=params)  # warm-up
        runs = [dict(zip(res.column_names, r)) for r in res.result_rows]
        lines_s = timed(lambda: client.query(lines_sql, parameters=params), args.runs)
        unreg_s = timed(lambda: client.query(unreg_sql, parameters={k: params[k] for k in ("provider", "from", "to")}),
                        args.runs)  # fmt: skip
        reference: dict[str, object] = {"runs": 0}
        if args.reference_runs:  # the former day-by-day query, timed in this same run on the same data
            ref_sql = REFERENCE_SQL.read_text(encoding="utf-8")
            ref = client.query(ref_sql, parameters=params)
            prices = {r[0]: tuple(r[1:]) for r in client.query(sql.report("assessment_prices")).result_rows}
            ref_s = timed(lambda: client.query(ref_sql, parameters=params), args.reference_runs)
            old = [dict(zip(ref.column_names, r)) for r in ref.result_rows]
            reference = {"runs": args.reference_runs, "query": str(REFERENCE_SQL.relative_to(ROOT)), **figures(ref_s),
                         "same_runs": same_runs(runs, old, prices)}  # fmt: skip
        async_store = store.AsyncStore(client)
        scheme = load_scheme()

        got: list[Assessment] = []

        async def assess_timed() -> list[float]:
            # one event loop for all runs, as in the web process; the coroutine asyncio.run() starts returns
            # no Assessment: Python 3.11's asyncio.run() formats the repr of its main task (and so of its
            # result, 80,000 lines) when it restores the SIGINT handler, which would be timed too
            out = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                got[:] = [await run_assessment(async_store, PROVIDER, date(YEAR, 1, 1), date(YEAR, 12, 31), scheme)]
                out.append(time.perf_counter() - t0)
            return out

        async def quarterly_timed() -> list[float]:
            """The quarterly provider report (§26) of Q3, every section (resources, incidents, SLA, …)."""
            from dashboard.billing_reports import provider_report

            await provider_report(async_store, PROVIDER, "quarterly", date(YEAR, 7, 1), date(YEAR, 9, 30), "Q3")
            out = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                await provider_report(async_store, PROVIDER, "quarterly", date(YEAR, 7, 1), date(YEAR, 9, 30), "Q3")
                out.append(time.perf_counter() - t0)
            return out

        def api() -> bytes:  # what GET /api/v1/assessments adds: the JSON document, rendered
            with gc_paused():
                return FastJSONResponse(assessment_doc(a)).body

        whole_s = asyncio.run(assess_timed())
        quarterly_s = asyncio.run(quarterly_timed())
        a = got[0]
        body = api()
        api_s = timed(api, args.runs)
        result = {
            "benchmark": "annual fee assessment over daily rollups (sql/reports/assessment_lines.sql)",
            "command": f"python bench/assessment.py --resources {args.resources} --runs {args.runs}",
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "version": __version__,
            "resources": args.resources, "days": 365, "rows": counts, "seed_s": round(seed_s, 2),
            "runs": args.runs, "goal_s": GOAL_S,
            "assessment_lines_s": figures(lines_s),
            "reference_lines_s": reference,
            "assessment_unregistered_s": {"median": round(statistics.median(unreg_s), 3)},
            "whole_assessment_s": figures(whole_s),
            "quarterly_report_s": figures(quarterly_s),
            "api_json_s": {**figures(api_s), "bytes": len(body)},
            "output": {"runs": len(runs), "lines": len(a.lines), "exclusions": len(a.exclusions),
                       "unregistered": len(a.unregistered), "gross": str(a.totals.gross), "net": str(a.totals.net)},
        }  # fmt: skip
        async_store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(result))
    print(f"written to {out}")
    return 0


def table(r: dict) -> str:  # type: ignore[type-arg]
    """The figures as a table, with the goal beside them."""

    def met(s: float) -> str:
        return f"goal < {GOAL_S:g} s: {'met' if s < GOAL_S else 'NOT met'}"

    lines_s, ref, whole, api, out = (r["assessment_lines_s"]["median"], r["reference_lines_s"],
                                     r["whole_assessment_s"]["median"], r["api_json_s"], r["output"])  # fmt: skip
    rows = [("assessment_lines.sql (median)", f"{lines_s:.3f} s", met(lines_s))]
    if ref["runs"]:
        same = "yes" if ref["same_runs"] else "NO"
        rows.append(("reference day-by-day query (median)", f"{ref['median']:.3f} s",
                     f"same runs: {same}; {ref['median'] / max(lines_s, 1e-9):.1f}x the time"))  # fmt: skip
    rows += [("whole assessment, run_assessment (median)", f"{whole:.3f} s", met(whole)),
             ("quarterly provider report, Q3 (median)", f"{r['quarterly_report_s']['median']:.3f} s",
              met(r["quarterly_report_s"]["median"])),
             ("JSON document + rendering (median)", f"{api['median']:.3f} s", f"{api['bytes'] / 1e6:.1f} MB"),
             ("runs / lines / exclusions", f"{out['runs']} / {out['lines']} / {out['exclusions']}", ""),
             ("gross / net (CNY)", f"{out['gross']} / {out['net']}", "")]  # fmt: skip
    width = max(len(x[0]) for x in rows)
    head = (f"annual fee assessment: {r['resources']} resources x {r['days']} days ({r['rows']['rollup_1d']} rollup "
            f"rows), {r['runs']} runs, {r['machine']['cpus']} CPUs")  # fmt: skip
    return "\n".join([head] + [f"  {a.ljust(width)}  {b:>24}  {c}" for a, b, c in rows])


if __name__ == "__main__":
    raise SystemExit(main())
