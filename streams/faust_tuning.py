"""Faust's aiokafka consumer waits up to 1.5 s per fetch (``fetch_max_wait_ms=1500``, hard-coded).

A broker that holds a fetch for its full wait when data arrives on another partition (Tansu
does: DESIGN.md) then adds up to that wait to every event's latency, and an alert waits behind
it. ``apply()`` makes the worker consumer's wait a setting (default 100 ms): a few more idle
fetch requests per second, and an event reaches its agent within about that bound.
"""

from __future__ import annotations

import logging
from typing import Any

_applied: dict[str, int] = {}


def apply(fetch_max_wait_ms: int) -> None:
    """Patch Faust's worker-consumer factory once per process (idempotent; last value wins)."""
    from faust.transport.drivers import aiokafka as driver

    _applied["ms"] = int(fetch_max_wait_ms)
    cls = driver.AIOKafkaConsumerThread
    if getattr(cls, "_opscenter_tuned", False):
        return
    original = getattr(cls, "_create_worker_consumer", None)
    if original is None:  # another Faust: run with its own fetch wait rather than not at all
        logging.getLogger(__name__).warning("Faust has no _create_worker_consumer: fetch wait not tuned")
        return

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = _applied["ms"]  # read when the consumer starts its fetcher
        return consumer

    cls._create_worker_consumer = create
    cls._opscenter_tuned = True
