"""Billing and report API (R5, R6; §6, §12, §26, §32–§35): the routes of the billing modules.

- ``/api/v1/prices``: the billing standard; the Finance Bureau appends versions (dashboard/billing_prices.py).
- ``/api/v1/judgements``: services the bureau judged unqualified, excluded from billing (§34, same module).
- ``/api/v1/sla-results``: a provider's SLA results of a period, the input of the quality deduction
  (§33, dashboard/billing_sla.py).
- ``/api/v1/assessments``: the line-item fee assessment as JSON, CSV or XLSX (dashboard/billing_assessment.py).
- ``/api/v1/reports/provider``: a provider's monthly / quarterly / annual report (§26,
  dashboard/billing_reports.py); ``/api/v1/reports/unit``: a unit's annual evaluation (§32,
  dashboard/billing_unit.py); both as a printable HTML page, JSON, CSV or XLSX (dashboard/billing_render.py).

``opscenter report`` writes the same reports to files (dashboard/billing_files.py). docs/billing.md
and docs/reports.md have the rules.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from dashboard.billing_assessment import assessment_doc, get_assessment, period_of, run_assessment
from dashboard.billing_common import load_scheme, scheme, today_cst
from dashboard.billing_files import write_reports
from dashboard.billing_prices import (
    create_judgement,
    create_price,
    list_judgements,
    list_prices,
    withdraw_judgement,
)
from dashboard.billing_render import report_css
from dashboard.billing_reports import get_provider_report, provider_report, report_period
from dashboard.billing_sla import put_sla_results, sla_figures
from dashboard.billing_unit import get_unit_report, unit_evaluation

__all__ = [  # the names other parts of the product (CLI, bench, tests) import from here
    "assessment_doc", "load_scheme", "period_of", "provider_report", "report_period", "routes", "run_assessment",
    "scheme", "sla_figures", "today_cst", "unit_evaluation", "write_reports",
]  # fmt: skip


def routes() -> list[BaseRoute]:
    scheme()  # validate deduction.yaml at start: a bad file names its line and field here
    return [
        Route("/api/v1/prices", list_prices, methods=["GET"]),
        Route("/api/v1/prices", create_price, methods=["POST"]),
        Route("/api/v1/judgements", list_judgements, methods=["GET"]),
        Route("/api/v1/judgements", create_judgement, methods=["POST"]),
        Route("/api/v1/judgements/{judgement_id}", withdraw_judgement, methods=["DELETE"]),
        Route("/api/v1/sla-results", put_sla_results, methods=["POST"]),
        Route("/api/v1/assessments", get_assessment, methods=["GET"]),
        Route("/api/v1/reports/provider", get_provider_report, methods=["GET"]),
        Route("/api/v1/reports/unit", get_unit_report, methods=["GET"]),
        Route("/api/v1/reports/report.css", report_css, methods=["GET"]),
    ]
