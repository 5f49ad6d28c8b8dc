"""Registration points for domain agents: each entry is ``register(app, services) -> None``.

A domain module (``streams/utilization.py``, ``streams/sla.py``, …) defines its agents and
timers inside its ``register`` function, keeps its state on ``services.domains[<name>]``,
and is listed here, one line each.
"""

from __future__ import annotations

from typing import Any, Callable

DOMAINS: list[Callable[[Any, Any], None]] = [
]
