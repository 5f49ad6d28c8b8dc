"""A provider's SLA results of a period (§33), the input of the quality deduction: ``/api/v1/sla-results``.

Entered by the bureau until the SLA figures are computed (``streams/sla_figures.py``); the
assessment reads them through :func:`sla_figures` (request > stored row > computed completeness).
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dashboard.auth import require
from dashboard.billing_common import audit, jsonable, scheme, store_of, today_cst
from dashboard.billing_prices import not_json
from dashboard.http import bad
from dashboard.http import json_object as body_of
from opscenter import fees
from opscenter.store import AsyncStore
from streams.sla_figures import period_figures

SLA_FIGURES = ("availability_pct", "within_target_pct", "breaches_p1", "breaches_p2", "breaches_p3", "breaches_p4",
               "satisfaction", "completeness_pct")  # fmt: skip
SLA_COLUMNS = ("provider_id", "period_from", "period_to", *SLA_FIGURES, "source", "entered_by", "ts")


def _figure(name: str, value: Any) -> float | int | None:
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(name) from None
    if math.isnan(v) or math.isinf(v) or v < 0:
        raise ValueError(name)
    if name.startswith("breaches_"):
        if v != int(v) or v >= 2**32:
            raise ValueError(name)
        return int(v)
    return v


def figures_of(values: dict[str, Any]) -> dict[str, Any]:
    """Typed SLA figures from a body or query; ValueError names the first bad one."""
    return {k: _figure(k, values.get(k)) for k in SLA_FIGURES}


COMPUTED_SOURCE = "computed from incidents, SLA clocks and ratings (streams/sla_figures.py)"


async def computed_figures(store: AsyncStore, provider: str, first: date, last: date,
                           now: datetime) -> dict[str, Any] | None:  # fmt: skip
    """:func:`streams.sla_figures.period_figures` over the days of [first, last] that have begun by
    ``now`` (Asia/Shanghai); None when none has."""
    end = fees.effective_to(first, last, today_cst(now))
    if end is None:
        return None
    return await period_figures(store, provider, first, end, int(now.timestamp() * 1000))


def sla_figures(row: dict[str, Any] | None, override: dict[str, Any], override_source: str,
                computed_completeness: float | None, computed: dict[str, Any] | None = None) -> fees.SlaFigures:  # fmt: skip
    """The figures for the deduction and where each came from: request > stored row > computed
    (``computed``: :func:`streams.sla_figures.period_figures`; completeness from the rollups)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for k in SLA_FIGURES:
        if computed and computed.get(k) is not None:
            values[k], sources[k] = computed[k], COMPUTED_SOURCE
    if row:
        stored = f"sla_results ({row['source'] or 'entered'} by {row['entered_by']} at {jsonable(row['ts'])})"
        for k in SLA_FIGURES:
            if row.get(k) is not None:
                values[k], sources[k] = row[k], stored
    for k, v in override.items():
        if v is not None:
            values[k], sources[k] = v, override_source
    if values.get("completeness_pct") is None and computed_completeness is not None:
        values["completeness_pct"] = computed_completeness
        sources["completeness_pct"] = "computed from rollup_1d over the assessed resource-days"
    counts = [values.get(f"breaches_p{i}") for i in range(1, 5)]
    breaches = None if all(c is None for c in counts) else {f"P{i + 1}": int(c or 0) for i, c in enumerate(counts)}
    src = {k: v for k, v in sources.items() if not k.startswith("breaches_")}
    if breaches is not None:
        src["breaches"] = next(sources[f"breaches_p{i}"] for i in range(1, 5) if f"breaches_p{i}" in sources)
    return fees.SlaFigures(values.get("availability_pct"), values.get("within_target_pct"), breaches,
                           values.get("satisfaction"), values.get("completeness_pct"), src)  # fmt: skip


def bad_figures(override: dict[str, Any]) -> list[str]:
    """The names of figures outside their range under the current scheme."""
    return fees.check_figures(scheme(), sla_figures(None, override, "", None))


async def stored_sla_row(store: AsyncStore, provider: str, first: date, last: date) -> dict[str, Any] | None:
    """The newest ``sla_results`` row for exactly this provider and period, or None."""
    rows = await store.query_dicts(
        f"SELECT {', '.join(SLA_COLUMNS)} FROM sla_results WHERE provider_id = {{p:String}} "
        "AND period_from = {f:Date} AND period_to = {t:Date} ORDER BY ts DESC LIMIT 1",
        {"p": provider, "f": first, "t": last},
    )
    return rows[0] if rows else None


@require("bureau")
async def put_sla_results(request: Request) -> Response:
    """The bureau records a provider's SLA results of a period (newest row wins), audited."""
    doc = await body_of(request)
    if doc is None:
        return not_json()
    provider = str(doc.get("provider_id") or "")
    try:
        first, last = fees.parse_day(doc.get("from"), "from"), fees.parse_day(doc.get("to"), "to")
        figs = figures_of(doc)
    except fees.PriceError as exc:
        return bad("schema", exc.zh, exc.en)
    except ValueError as exc:
        return bad("schema", f"{exc} 不是有效数值", f"{exc} is not a valid non-negative number")
    wrong = bad_figures(figs)
    if not provider or last < first or wrong:
        return bad("schema", "需要 provider_id、有效的起止日期及取值范围内的指标",
                   f"provider_id, from ≤ to and figures in range are required (bad: {', '.join(wrong) or '-'})")  # fmt: skip
    p = request.state.principal
    source = str(doc.get("source") or "bureau")[:200]
    row = [provider, first, last, *figs.values(), source, p.name, datetime.now(timezone.utc)]
    await store_of(request).insert_retrying("sla_results", [[v] for v in row], SLA_COLUMNS)
    await audit(request, "sla_results_put", provider, f"{first}..{last} " + " ".join(f"{k}={v}" for k, v in figs.items()))
    return JSONResponse({"provider_id": provider, "from": str(first), "to": str(last), **figs}, status_code=201)
