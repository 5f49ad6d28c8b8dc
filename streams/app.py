"""The Faust app: topics and thin agents that hand batches of messages to the pipeline stages."""

from __future__ import annotations

import logging
from typing import Any

import faust

from opscenter import kafka, metrics
from opscenter.wire import TOPIC_DEADLETTER, TOPIC_LIFECYCLE, TOPIC_TELEMETRY
from streams import faust_tuning
from streams.ingest import Message
from streams.registry import store_dead_letters

log = logging.getLogger(__name__)


def _messages(events: Any) -> list[Message]:
    return [Message(e.message.partition, e.message.offset, e.message.value, e.message.topic) for e in events]


def build_faust_app(services: Any) -> faust.App:
    """A Faust app wired to ``services`` (see :class:`opscenter.services.Services`)."""
    s = services.settings
    faust_tuning.apply(s.consumer_fetch_wait_ms)
    app = faust.App(
        s.app_id,
        broker=s.faust_broker(),
        broker_credentials=kafka.faust_credentials(s),  # SASL/TLS from the settings (opscenter/kafka.py)
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        processing_guarantee="at_least_once",
        datadir=str((s.data_dir / "faust").resolve()),
        web_enabled=False,
        autodiscover=False,
        topic_partitions=s.topic_partitions,
        topic_replication_factor=s.topic_replicas,
        topic_allow_declare=False,
        broker_session_timeout=s.broker_session_timeout_s,
        broker_heartbeat_interval=s.broker_heartbeat_s,
        broker_request_timeout=s.broker_session_timeout_s + 10,
        broker_rebalance_timeout=s.broker_session_timeout_s + 10,
        broker_commit_interval=s.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=4096,
        producer_acks=-1,
    )
    (s.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    telemetry = app.topic(TOPIC_TELEMETRY, value_type=bytes, key_type=bytes)
    lifecycle = app.topic(TOPIC_LIFECYCLE, value_type=bytes, key_type=bytes)
    deadletter = app.topic(TOPIC_DEADLETTER, value_type=bytes, key_type=bytes)
    batch_n, batch_s = s.ingest_batch_messages, s.ingest_batch_ms / 1000

    @app.agent(telemetry, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        # A batch is validated while the one before it is still being inserted. Its messages are
        # acknowledged only once their samples are stored: one reference more per message, released
        # by ``on_stored`` (take_events releases its own when the next batch is taken).
        async for events in stream.take_events(batch_n, within=batch_s):
            for e in events:
                e.message.incref()

            async def stored(events: list = events) -> None:
                for e in events:
                    await stream.ack(e)

            try:
                await services.ingest.submit(_messages(events), on_stored=stored)
            except BaseException:
                for e in events:  # as take_events would: it acks a batch whose body raised
                    e.message.decref()
                raise

    @app.agent(lifecycle, name="registry")
    async def registry(stream: faust.StreamT) -> None:
        async for events in stream.take_events(500, within=0.1):
            await services.registry_stage.process(_messages(events))

    @app.agent(deadletter, name="deadletters")
    async def deadletters(stream: faust.StreamT) -> None:
        async for events in stream.take_events(1000, within=0.5):
            await store_dead_letters(services.store, _messages(events))

    # A timer that raises would crash the whole Faust app: each one logs and carries on.
    @app.timer(interval=1.0)
    async def close_windows() -> None:
        try:
            await services.ingest.tick()
        except Exception:  # noqa: BLE001
            log.exception("closing live windows failed; retrying next tick")

    @app.timer(interval=5.0)
    async def consumer_lag() -> None:
        # Lag from the Fetch high watermark: Tansu's ListOffsets(latest) is wrong (DESIGN.md).
        try:
            consumer = app.consumer
            metrics.consumer_lag.clear()  # only the partitions this worker owns now (not before a rebalance)
            for tp in consumer.assignment():
                hw = consumer.highwater(tp)
                pos = consumer._read_offset[tp]  # noqa: SLF001 - last offset read
                if hw is not None and pos is not None:
                    metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - pos - 1))
        except Exception:  # noqa: BLE001
            log.exception("consumer lag update failed")

    # Domain agents (utilization, SLA, alerts, …): one module each, listed in streams/domains.py.
    from streams.domains import DOMAINS

    for register in DOMAINS:
        register(app, services)

    @app.on_partitions_revoked.connect
    async def on_revoked(app_: faust.App, revoked: Any, **kwargs: Any) -> None:
        services.ingest.forget_marks()

    return app
