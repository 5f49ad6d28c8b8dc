"""The registry stage: lifecycle.v1 → resource registry, ClickHouse inventory, Redis notice."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Sequence

import msgspec
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from opscenter import metrics
from opscenter.inventory import TS_MAX, TS_MIN, UINT32_MAX, LifecycleError, Registry, Resource
from opscenter.store import AsyncStore
from opscenter.wire import TOPIC_DEADLETTER, LifecycleEvent, deadletter_decoder, json_encoder, lifecycle_decoder
from streams.ingest import Message, SendFn, dead_letter
from streams.validation import Reject

log = logging.getLogger(__name__)

INVENTORY_CHANNEL = "opscenter:inventory"
INVENTORY_COLUMNS = (
    "resource_id", "provider_id", "unit_id", "district_id", "name", "vcpu", "mem_gb", "storage_gb",
    "state", "interval_s", "updated", "delivered", "deregistered", "version", "resource_class",
)  # fmt: skip
EVENT_COLUMNS = (
    "event_id", "resource_id", "type", "ts", "provider_id", "unit_id", "district_id", "vcpu", "mem_gb",
    "storage_gb", "resource_class",
)  # fmt: skip


def _ms(ts: datetime | None) -> int | None:
    return None if ts is None else int(ts.timestamp() * 1000)


def resource_row(r: Resource, version: int) -> list:
    return [r.resource_id, r.provider_id, r.unit_id, r.district_id, r.name, r.vcpu, r.mem_gb,
            r.storage_gb, r.state, r.interval_s, _ms(r.updated), _ms(r.delivered), _ms(r.deregistered),
            version, r.resource_class]  # fmt: skip


def resource_from_row(row: dict) -> Resource:
    def dt(v: datetime | None) -> datetime | None:
        return None if v is None else (v if v.tzinfo else v.replace(tzinfo=timezone.utc))

    return Resource(
        resource_id=row["resource_id"], provider_id=row["provider_id"], unit_id=row["unit_id"],
        district_id=row["district_id"], name=row["name"], vcpu=row["vcpu"], mem_gb=row["mem_gb"],
        storage_gb=row["storage_gb"], state=row["state"], interval_s=row["interval_s"],
        updated=dt(row["updated"]), delivered=dt(row["delivered"]), deregistered=dt(row["deregistered"]),
        resource_class=row.get("resource_class") or "standard",
    )  # type: ignore[arg-type]  # fmt: skip


async def load_registry(store: AsyncStore) -> tuple[Registry, set[str]]:
    """The registry and the ids of lifecycle events already applied, from ClickHouse."""
    rows = await store.query_dicts(f"SELECT {', '.join(INVENTORY_COLUMNS)} FROM inventory FINAL")
    reg = Registry({r["resource_id"]: resource_from_row(r) for r in rows})
    seen = {row[0] for row in await store.query("SELECT DISTINCT event_id FROM lifecycle_events")}
    metrics.registry_size.set(len(reg))
    return reg, seen


def resource_json(r: Resource) -> bytes:
    return orjson.dumps(asdict(r))


def decode_lifecycle(value: bytes) -> LifecycleEvent | Reject:
    """One lifecycle.v1 message, or why it cannot be read (``schema`` / ``unparseable``); pure."""
    try:
        return lifecycle_decoder.decode(value)
    except msgspec.ValidationError as exc:  # (a subclass of DecodeError: first)
        return Reject("schema", str(exc), value)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Reject("unparseable", str(exc), value)
    except RecursionError:  # msgspec recurses even into unknown fields it skips
        return Reject("unparseable", "JSON nested too deeply", value)


def event_row(ev: LifecycleEvent, res: Resource) -> list:
    """The ``lifecycle_events`` row of an applied event (resource_class: the class it set, '' if none)."""
    spec = ev.spec
    return [ev.event_id, ev.resource_id, ev.type, _ms(ev.ts), ev.provider_id, res.unit_id, res.district_id,
            spec and spec.vcpu, spec and spec.mem_gb, spec and spec.storage_gb, ev.resource_class]  # fmt: skip


class RegistryStage:
    """Applies lifecycle events in order; invalid ones go to the dead-letter topic."""

    def __init__(
        self,
        store: AsyncStore,
        redis: Redis,
        registry: Registry,
        seen: set[str],
        send: SendFn,
        applied_elsewhere: set[str] | None = None,
    ) -> None:
        self.store, self.redis, self.registry, self.seen, self.send = store, redis, registry, seen, send
        # events the LifecycleReader already applied to the registry: store them, don't re-apply
        self.applied_elsewhere = applied_elsewhere if applied_elsewhere is not None else set()

    async def process(self, messages: Sequence[Message]) -> None:
        now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
        events, inv_rows, changed = [], [], []
        for m in messages:
            metrics.messages_consumed.labels(m.topic).inc()
            ev = decode_lifecycle(m.value)
            if isinstance(ev, Reject):
                await self._reject(ev, m, now_ms)
                continue
            if ev.event_id in self.seen:
                continue  # a redelivery changes nothing
            try:
                if ev.event_id in self.applied_elsewhere:
                    self.applied_elsewhere.discard(ev.event_id)
                    res = self.registry.get(ev.resource_id)  # type: ignore[assignment]
                    assert res is not None
                else:
                    res = self.registry.apply(ev)
            except LifecycleError as exc:
                await self._reject(Reject("invalid_lifecycle", str(exc), m.value, ev.provider_id), m, now_ms)
                continue
            self.seen.add(ev.event_id)
            events.append(event_row(ev, res))
            inv_rows.append(resource_row(res, now_ms * 1000 + len(inv_rows)))
            changed.append(res)
        if events:
            # Replacing tables keyed on the event / resource: a retried insert adds nothing
            await self.store.insert_retrying("lifecycle_events", list(zip(*events)), EVENT_COLUMNS)
            await self.store.insert_retrying("inventory", list(zip(*inv_rows)), INVENTORY_COLUMNS)
            metrics.registry_size.set(len(self.registry))
            try:
                pipe = self.redis.pipeline(transaction=False)
                for r in changed:
                    pipe.publish(INVENTORY_CHANNEL, resource_json(r))
                await asyncio.wait_for(pipe.execute(), 5.0)
            except (RedisError, OSError) as exc:  # (asyncio's TimeoutError is an OSError)
                # the notice is a hint: ClickHouse inventory is stored, and the HTTP ingest reads
                # lifecycle.v1 itself before rejecting a resource as unregistered
                metrics.live_errors.labels("inventory").inc()
                log.warning("inventory notice not published, Redis unavailable: %s", exc)

    async def _reject(self, reject: Reject, m: Message, now_ms: int) -> None:
        d = dead_letter(reject, m, now_ms)
        await self.send(TOPIC_DEADLETTER, (d.provider_id or "-").encode(), json_encoder.encode(d))
        metrics.deadlettered.labels(d.provider_id or "-", d.reason).inc()


DEADLETTER_COLUMNS = (
    "ingest_ts", "reason", "detail", "provider_id", "batch_id", "payload", "src_topic", "src_partition",
    "src_offset", "idx",
)  # fmt: skip


def deadletter_row(value: bytes) -> list | Reject:
    """The ``deadletters`` row of one deadletter.v1 message, or why it cannot be stored; pure.

    Anything can be produced to the topic: values outside the column types (UInt16 partition,
    UInt64 offset, UInt32 index, DateTime64 time) would make every insert retry fail.
    """
    try:
        d = deadletter_decoder.decode(value)
    except msgspec.ValidationError as exc:
        return Reject("schema", str(exc), value)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Reject("unparseable", str(exc), value)
    except RecursionError:
        return Reject("unparseable", "JSON nested too deeply", value)
    s = d.source
    if d.ingest_ts.tzinfo is None or not TS_MIN <= d.ingest_ts < TS_MAX:
        return Reject("out_of_range", f"ingest_ts {d.ingest_ts.isoformat()} out of range", value)
    if not (0 <= s.partition < 2**16 and 0 <= s.offset < 2**64 and 0 <= d.index <= UINT32_MAX):
        return Reject("out_of_range", f"source {s.partition}@{s.offset} / index {d.index} out of range", value)
    return [_ms(d.ingest_ts), d.reason, d.detail, d.provider_id, d.batch_id, d.payload,
            s.topic, s.partition, s.offset, d.index]  # fmt: skip


async def store_dead_letters(store: AsyncStore, messages: Sequence[Message]) -> None:
    """deadletter.v1 → ClickHouse ``deadletters`` (Replacing on source position + index)."""
    rows = []
    for m in messages:
        row = deadletter_row(m.value)
        if isinstance(row, Reject):  # not ours: nowhere left to send it but the log and a counter
            metrics.deadletters_dropped.labels(row.reason).inc()
            log.error("dead letter at %s[%d]@%d dropped (%s: %s)", m.topic, m.partition, m.offset,
                      row.reason, row.detail[:200])  # fmt: skip
            continue
        rows.append(row)
    if rows:
        await store.insert_retrying("deadletters", list(zip(*rows)), DEADLETTER_COLUMNS)


#: the reader's longest fetch wait; a watermark seen this long (×3) after a read began is fresh
FETCH_WAIT_MS = 50
FRESH_WATERMARK_S = 3 * FETCH_WAIT_MS / 1000


class LifecycleReader:
    """Catches the local registry up with lifecycle.v1 (group-less reader, all partitions).

    Telemetry and lifecycle events travel on different topics and agents, so a resource's
    first samples can be consumed before its "delivered" event is applied. Before a sample is
    rejected as unregistered, the ingest stage asks this reader to read lifecycle.v1 up to
    the Fetch high watermark (Tansu's ListOffsets is wrong, DESIGN.md) and re-checks. Events
    applied here are marked, so the registry agent stores them without applying them twice.
    """

    def __init__(self, bootstrap: str, registry: Registry, seen: set[str], topic: str) -> None:
        self.bootstrap, self.registry, self.seen, self.topic = bootstrap, registry, seen, topic
        self.applied_here: set[str] = set()
        self._consumer: Any = None
        self._started = False
        self._lock: Any = None
        self._last = 0.0  # when the last read ended (monotonic)
        self._last_started = 0.0
        self._last_applied = False

    async def catch_up(self, timeout_s: float = 10.0, min_interval_s: float = 0.5) -> bool:
        """Read to the high watermark; True if any event was applied.

        Never a false "nothing new": a caller is answered by a read that *started after it
        asked* (concurrent callers share one read). Reads are at least ``min_interval_s``
        apart: a caller that comes sooner waits for the next read instead of being told
        nothing changed (that answer once rejected a just-registered resource's samples).
        """
        import asyncio
        import time as _time

        asked = _time.monotonic()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._last_started >= asked:  # a read that began after we asked has finished
                return self._last_applied
            gap = min_interval_s - (_time.monotonic() - self._last)
            if gap > 0:
                await asyncio.sleep(gap)
            self._last_started = _time.monotonic()
            applied = await self._read_to_end(timeout_s)
            self._last, self._last_applied = _time.monotonic(), applied
            return applied

    async def _read_to_end(self, timeout_s: float) -> bool:
        import time as _time

        from aiokafka.structs import TopicPartition

        if not self._started:
            from aiokafka import AIOKafkaConsumer

            # ``bootstrap``: "host:port" or every connection option (opscenter.kafka.client_kwargs)
            conn = self.bootstrap if isinstance(self.bootstrap, dict) else {"bootstrap_servers": self.bootstrap}
            self._consumer = AIOKafkaConsumer(
                **conn, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                fetch_max_wait_ms=FETCH_WAIT_MS,
            )  # fmt: skip
            await self._consumer.start()
            self._started = True
        if not self._consumer.assignment():
            # right after start the topic's metadata may not be known yet: ask for it, and do
            # not settle for "no partitions" (that read nothing, ever, and every resource
            # registered after the process started was "unregistered" over HTTP)
            parts = self._consumer.partitions_for_topic(self.topic)
            if not parts:
                await self._consumer.topics()  # a metadata request for every topic
                parts = self._consumer.partitions_for_topic(self.topic)
            if not parts:
                log.warning("lifecycle reader: no partitions known for %s yet", self.topic)
                return False
            self._consumer.assign([TopicPartition(self.topic, p) for p in sorted(parts)])
        applied = False
        began = _time.monotonic()
        deadline = began + timeout_s
        while _time.monotonic() < deadline:
            batch = await self._consumer.getmany(timeout_ms=FETCH_WAIT_MS * 2)
            for msgs in batch.values():
                for m in msgs:
                    applied |= self._apply(m.value)
            done = True
            for tp in self._consumer.assignment():
                hw = self._consumer.highwater(tp)
                if hw is None or await self._consumer.position(tp) < hw:
                    done = False
            # the high watermark is the one of the last fetch response: only one to a fetch sent
            # after we began can show an event produced just before (the CI flake of
            # test_http_ingest: "nothing new" from a stale watermark)
            if done and not batch and _time.monotonic() - began >= FRESH_WATERMARK_S:
                break
        return applied

    def _apply(self, value: bytes) -> bool:
        ev = decode_lifecycle(value)
        if isinstance(ev, Reject):
            return False  # the agent dead-letters it
        if ev.event_id in self.seen or ev.event_id in self.applied_here:
            return False
        try:
            self.registry.apply(ev)
        except LifecycleError:
            return False  # the agent dead-letters it
        self.applied_here.add(ev.event_id)
        return True

    async def stop(self) -> None:
        if self._started:
            await self._consumer.stop()
