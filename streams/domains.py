"""Registration points for domain agents: each entry is ``register(app, services) -> None``.

A domain module (``streams/utilization.py``, ``streams/sla.py``, …) defines its agents and
timers inside its ``register`` function, keeps its state on ``services.domains[<name>]``,
and is listed here, one line each.
"""

from __future__ import annotations

from typing import Any, Callable

DOMAINS: list[Callable[[Any, Any], None]] = [
    __import__("streams.sla_agent", fromlist=["register"]).register,  # incidents, SLA clocks (issue 4)
    __import__("streams.utilization", fromlist=["register"]).register,  # windows, bands, right-sizing (issue 3)
    __import__("alerts.agent", fromlist=["register"]).register,  # rules, alert state, notifications (issue 5)
    __import__("streams.quality", fromlist=["register"]).register,  # nodata, outages, completeness (issue 4, §17)
]
