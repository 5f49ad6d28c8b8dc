"""LifecycleReader.catch_up against the real broker: no false "nothing new" (the CI flake of
test_http_ingest: a registration produced just after a read was answered "nothing applied")."""

from __future__ import annotations

import asyncio

from opscenter.inventory import Registry
from opscenter.services import create_topics
from opscenter.settings import Settings
from opscenter.wire import TOPIC_LIFECYCLE
from streams.registry import LifecycleReader
from tests.integration.helpers import delivered, produce


async def test_a_registration_right_after_a_read_is_found(settings: Settings) -> None:
    await create_topics(settings)
    registry = Registry()
    reader = LifecycleReader(settings.kafka_bootstrap(), registry, set(), TOPIC_LIFECYCLE)
    try:
        await reader.catch_up()
        await produce(settings, TOPIC_LIFECYCLE, [(b"r", delivered("fresh-1", "p1"))])
        # well within min_interval_s of the last read: it waits for the next read instead of
        # answering from the old one
        assert await reader.catch_up(min_interval_s=1.5) is True
        assert registry.get("fresh-1") is not None
    finally:
        await reader.stop()


async def test_concurrent_callers_share_one_read(settings: Settings) -> None:
    await create_topics(settings)
    registry = Registry()
    reader = LifecycleReader(settings.kafka_bootstrap(), registry, set(), TOPIC_LIFECYCLE)
    try:
        await reader.catch_up()
        await produce(settings, TOPIC_LIFECYCLE, [(b"r", delivered("fresh-2", "p1"))])
        reads = 0
        real = reader._read_to_end

        async def counted(timeout_s: float) -> bool:
            nonlocal reads
            reads += 1
            return await real(timeout_s)

        reader._read_to_end = counted  # type: ignore[method-assign]
        answers = await asyncio.gather(*(reader.catch_up(min_interval_s=0.2) for _ in range(5)))
        assert answers == [True] * 5 and reads == 1
        assert registry.get("fresh-2") is not None
    finally:
        await reader.stop()
