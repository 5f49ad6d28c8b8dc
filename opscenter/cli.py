"""The ``opscenter`` command: one CLI for every process of the product."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from opscenter.settings import SettingsError, load_settings

LEVELS = {"crit": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING,
          "info": logging.INFO, "debug": logging.DEBUG}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="opscenter",
        description="威海市市级政务云 运行监控指挥中心 / Weihai government cloud operations control center",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start everything on one machine (embedded broker, Valkey, chDB)")
    up.add_argument("--simulate", action="store_true", help="also run the demo city's simulator")
    up.add_argument("--rate", type=float, default=None, help="simulator: samples per second in total")
    up.add_argument("--resources", type=int, default=None, help="simulator: resources to drive")
    up.add_argument("--backfill-days", type=float, default=0.0, help="simulator: history to backfill first")

    sub.add_parser("worker", help="run the stream processor (Faust worker) against the configured services")
    sub.add_parser("web", help="run the web app (dashboard, API, ingest) against the configured services")
    sub.add_parser("migrate", help="apply ClickHouse migrations and create the topics, then exit")

    sim = sub.add_parser("simulate", help="produce the demo city's telemetry to the configured broker")
    sim.add_argument("--rate", type=float, default=None, help="samples per second in total")
    sim.add_argument("--resources", type=int, default=None, help="resources to drive")
    sim.add_argument("--backfill-days", type=float, default=0.0, help="backfill this many days, then go live")
    sim.add_argument("--backfill-only", action="store_true", help="exit after the backfill")
    sim.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    sim.add_argument("--publish-inventory", action="store_true", help="publish the demo inventory first")
    rep = sub.add_parser("report", help="write provider reports or units' annual evaluations (HTML, CSV, XLSX, JSON)")
    rep.add_argument("kind", choices=["monthly", "quarterly", "annual", "unit"],
                     help="provider report period kind, or unit: the annual evaluation of units (§32)")  # fmt: skip
    rep.add_argument("period", help="e.g. 2026-03 (monthly), 2026-Q1 (quarterly), 2026 (annual, unit)")
    rep.add_argument("--provider", action="append", help="provider id (repeatable; default: all)")
    rep.add_argument("--unit", action="append", help="unit id, with kind unit (repeatable; default: all)")
    rep.add_argument("--format", action="append", choices=["html", "csv", "xlsx", "json"], help="(repeatable)")
    rep.add_argument("--out", default="reports", help="output folder")

    bench = sub.add_parser("bench", help="measure the pipeline on a private embedded stack")
    bench.add_argument("scenario", choices=["pipeline", "fanout", "memory", "alert-latency"], help="what to measure")
    bench.add_argument("--samples", type=int, default=1_000_000, help="pipeline: samples to push through")
    bench.add_argument("--resources", type=int, default=5000, help="pipeline: resources in the generated city")
    bench.add_argument("--clients", type=int, nargs="+", default=None, help="fanout: client counts to try")
    bench.add_argument("--seconds", type=float, default=10.0, help="fanout / alert-latency: seconds per level")
    bench.add_argument("--levels", type=int, nargs="+", default=None, help="memory: resource counts; alert-latency: load levels in %% of capacity")
    bench.add_argument("--out", default="bench/results", help="where the JSON results go")
    bench.add_argument("--runs", type=int, default=1, help="pipeline: runs, each in its own process; the median is reported")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:  # a clear message, no traceback, no secret values
        print(f"opscenter: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=LEVELS.get(settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("aiokafka", "faust", "mode", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, LEVELS.get(settings.log_level, 20)))
    from opscenter import runner
    from opscenter.embedded import PortBusyError

    try:
        if args.command == "up":
            return asyncio.run(runner.up(settings, args))
        if args.command == "worker":
            return asyncio.run(runner.worker(settings))
        if args.command == "web":
            return asyncio.run(runner.web(settings))
        if args.command == "migrate":
            return asyncio.run(runner.migrate(settings))
        if args.command == "report":
            from pathlib import Path

            from dashboard.api_billing import write_reports

            ids = args.unit if args.kind == "unit" else args.provider
            if (args.unit and args.kind != "unit") or (args.provider and args.kind == "unit"):
                print("opscenter: --unit goes with kind unit, --provider with the provider reports", file=sys.stderr)
                return 2
            from opscenter.fees import PriceError

            try:
                return asyncio.run(write_reports(settings, args.kind, args.period, ids, Path(args.out), args.format))
            except PriceError as exc:  # a period that does not parse: say which, in both languages
                print(f"opscenter: {exc.zh} / {exc.en}", file=sys.stderr)
                return 2
        if args.command == "bench":
            from opscenter import bench

            from pathlib import Path

            bench.main(args.scenario, samples=args.samples, resources=args.resources, clients=args.clients,
                       seconds=args.seconds, levels=args.levels, out_dir=Path(args.out), runs=args.runs)  # fmt: skip
            return 0
        if args.command == "simulate":
            return asyncio.run(runner.simulate(settings, args))
    except (PortBusyError, SettingsError) as exc:  # SettingsError: e.g. a TLS file or SASL password missing
        print(f"opscenter: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
