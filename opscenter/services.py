"""Connections and pipeline stages of one process, built once from the settings and passed down."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from redis.asyncio import Redis

from opscenter import kafka
from opscenter import store as store_mod
from opscenter.inventory import Registry, Resource
from opscenter.settings import Settings
from opscenter.wire import ALL_TOPICS, COMPACTED_TOPICS, TOPIC_LIFECYCLE
from streams.ingest import IngestPipeline
from streams.live import follow
from streams.registry import INVENTORY_CHANNEL, LifecycleReader, RegistryStage, load_registry
from streams.validation import Limits
from streams.windows import MinuteWindows

log = logging.getLogger(__name__)


async def create_topics(settings: Settings) -> list[str]:
    """Create every topic of the product that does not exist yet; return those created."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(settings), request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for name in ALL_TOPICS:
            if name in existing:
                continue
            configs = {"cleanup.policy": "compact"} if name in COMPACTED_TOPICS else {}
            wanted.append(NewTopic(name, settings.topic_partitions, settings.topic_replicas, topic_configs=configs))
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in wanted]
    finally:
        await admin.close()


@dataclass
class Services:
    settings: Settings
    store: store_mod.AsyncStore
    redis: Redis
    producer: AIOKafkaProducer
    registry: Registry
    ingest: IngestPipeline
    registry_stage: RegistryStage
    lifecycle_reader: LifecycleReader
    #: per-domain state (utilization windows, SLA clocks, alert state, …), keyed by domain name
    domains: dict[str, Any] = field(default_factory=dict)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Produce one message and wait for the broker's acknowledgement."""
        await self.producer.send_and_wait(topic, value=value, key=key)

    async def follow_inventory(self) -> None:
        """Apply registry changes made by other workers (published on Redis) to the local copy.

        Survives Redis restarts: it resubscribes, and catches up from lifecycle.v1 meanwhile.
        """
        from datetime import datetime

        def apply(_channel: str, data: bytes) -> None:
            doc = orjson.loads(data)
            for k in ("updated", "delivered", "deregistered"):
                if doc.get(k):
                    doc[k] = datetime.fromisoformat(doc[k])
            self.registry.put(Resource(**doc))

        await follow(self.redis, (INVENTORY_CHANNEL,), apply,
                     lambda: self.lifecycle_reader.catch_up(min_interval_s=0), "inventory follower")  # fmt: skip

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for name, domain in list(self.domains.items()):  # e.g. the alert service's HTTP session
            closer = getattr(domain, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:  # noqa: BLE001 - closing: report and go on
                    log.exception("closing domain %s failed", name)
        await self.lifecycle_reader.stop()
        await self.producer.stop()
        await self.redis.aclose()
        self.store.close()


async def open_services(settings: Settings) -> Services:
    """Connect to ClickHouse (migrated), Redis and Kafka; load the registry."""
    client = await asyncio.to_thread(store_mod.connect, settings)
    await asyncio.to_thread(store_mod.migrate, client, settings)
    store = store_mod.AsyncStore(client)
    redis = Redis.from_url(settings.redis(), **settings.redis_credentials())
    await redis.ping()
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(settings), acks="all", linger_ms=5, request_timeout_ms=30000,
        max_request_size=settings.ingest_max_body_bytes + 1024 * 1024,
    )  # fmt: skip
    await producer.start()
    registry, seen = await load_registry(store)

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        await producer.send_and_wait(topic, value=value, key=key)

    reader = LifecycleReader(kafka.client_kwargs(settings), registry, seen, TOPIC_LIFECYCLE)
    limits = Limits(settings.max_future_s, settings.raw_retention_days, settings.ingest_max_samples)
    ingest = IngestPipeline(
        store, redis, registry, send, limits, MinuteWindows(settings.allowed_lateness_s * 1000),
        registry_catch_up=reader.catch_up,
    )  # fmt: skip
    stage = RegistryStage(store, redis, registry, seen, send, applied_elsewhere=reader.applied_here)
    services = Services(settings, store, redis, producer, registry, ingest, stage, reader)
    services._tasks.append(asyncio.create_task(services.follow_inventory(), name="follow-inventory"))
    return services
