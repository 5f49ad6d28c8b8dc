"""Registration points for API routes of the domains: each entry returns a list of routes.

A domain's HTTP API lives in ``dashboard/api_<domain>.py`` with ``def routes() -> list[BaseRoute]``
and is listed here, one line each. Handlers find the process's services at
``request.app.state.services``.
"""

from __future__ import annotations

from typing import Callable

from starlette.routing import BaseRoute

ROUTES: list[Callable[[], list[BaseRoute]]] = [
    __import__("dashboard.api_incidents", fromlist=["routes"]).routes,  # POST /api/v1/incidents, GET /api/v1/sla (issue 4)
    __import__("dashboard.api_ratings", fromlist=["routes"]).routes,  # POST /api/v1/ratings (issue 4)
    __import__("dashboard.api_utilization", fromlist=["routes"]).routes,  # utilization, recommendations (issue 3)
    __import__("dashboard.api_alerts", fromlist=["routes"]).routes,  # alerts, silences, assurance periods (issue 5)
    __import__("dashboard.api_billing", fromlist=["routes"]).routes,  # prices, judgements, SLA results, assessments (issue 7)
    __import__("dashboard.api_quality", fromlist=["routes"]).routes,  # GET /api/v1/quality: telemetry quality (issue 4, §17)
]
