"""Registration points for API routes of the domains: each entry returns a list of routes.

A domain's HTTP API lives in ``dashboard/api_<domain>.py`` with ``def routes() -> list[BaseRoute]``
and is listed here, one line each. Handlers find the process's services at
``request.app.state.services``.
"""

from __future__ import annotations

from typing import Callable

from starlette.routing import BaseRoute

ROUTES: list[Callable[[], list[BaseRoute]]] = [
]
