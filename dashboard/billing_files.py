"""Reports written to files for ``opscenter report`` (provider reports and the units' annual evaluations)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dashboard.billing_render import render
from dashboard.billing_reports import PROVIDER_LAYOUT, provider_report, report_period
from dashboard.billing_unit import UNIT_LAYOUT, evaluation_year, unit_evaluation
from opscenter.store import AsyncStore

SUFFIX = {"html": ".html", "csv": ".csv", "xlsx": ".xlsx", "json": ".json"}


def progress(stream: Any, done: int, total: int, label: str) -> None:
    """``[#####.....] done/total label`` on one line of ``stream``, redrawn in place."""
    filled = int(30 * done / max(total, 1))
    stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {label:<20}")
    stream.flush()


async def write_reports(settings: Any, kind: str, period: str, ids: list[str] | None, out_dir: Path,
                        formats: list[str] | None = None, stream: Any = None) -> int:  # fmt: skip
    """Write reports to files with a progress bar on stderr (the body of ``opscenter report``).

    ``kind`` monthly / quarterly / annual: provider reports, ``ids`` are providers (default: every
    provider of the inventory). ``kind`` unit: the units' annual evaluations for the year
    ``period``, ``ids`` are units (default: every unit of the inventory).
    """
    from opscenter import store as store_mod

    stream = stream or sys.stderr
    if kind == "unit":
        first, _ = evaluation_year(period)
    else:
        first, last, label = report_period(kind, period)
    client = store_mod.connect(settings)
    store_mod.migrate(client, settings)  # a database from an older version gets the new tables
    store = AsyncStore(client)
    try:
        if not ids:
            column = "unit_id" if kind == "unit" else "provider_id"
            rows = await store.query(f"SELECT DISTINCT {column} FROM inventory WHERE {column} != '' ORDER BY {column}")
            ids = [r[0] for r in rows]
        out_dir.mkdir(parents=True, exist_ok=True)
        for i, subject in enumerate(ids):
            progress(stream, i, len(ids), subject)
            if kind == "unit":
                doc = await unit_evaluation(store, subject, first.year)
                layout, base = UNIT_LAYOUT, out_dir / f"report-unit-{subject}-{first.year}"
            else:
                doc = await provider_report(store, subject, kind, first, last, label)
                layout, base = PROVIDER_LAYOUT, out_dir / f"report-{subject}-{kind}-{first}"
            for fmt in formats or ["html", "csv", "xlsx"]:
                body = render(doc, layout, fmt, inline_css=True)
                path = base.with_name(base.name + SUFFIX[fmt])
                if isinstance(body, str):
                    path.write_text(body, encoding="utf-8")
                else:
                    path.write_bytes(body)
        progress(stream, len(ids), len(ids), "")
        stream.write("\n")
    finally:
        store.close()
    return 0
