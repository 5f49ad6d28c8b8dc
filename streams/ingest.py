"""The telemetry ingest stage: validate, window, dead-letter, store effectively once, go live.

Effectively once into ClickHouse: every stored sample carries the Kafka position it came
from. When a partition is (re)assigned, the highest stored offset per partition is read back
(``sink_offsets``), and messages at or below it are skipped: a worker killed after an insert
but before its offset commit replays those messages without doubling a row. Inside one
process, a failed insert is retried with the same deduplication token, so a retry of an
insert that did land adds nothing either. Offsets are committed by Faust only after
:meth:`IngestPipeline.process` returns, i.e. after the insert. Live state (Redis: the screens
and live-metric alerts) is written as soon as a chunk is validated, while ClickHouse inserts it:
an alert never waits for the database.

Redis down (docs/faults.md): live state is skipped, and the duplicate-batch check accepts the
batch unchecked (counted in ``opscenter_batch_dedup_unchecked_total``) rather than hold or drop
samples; replays of the same Kafka messages are still skipped by the stored offsets.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable, Sequence

import pyarrow as pa
from redis.asyncio import Redis

from opscenter import metrics
from opscenter.epochs import current_epoch, stored_topic
from opscenter.inventory import Registry
from opscenter.store import AsyncStore
from opscenter.wire import TOPIC_TELEMETRY, DeadLetter, DeadLetterSource, json_encoder
from streams.live import LiveState
from streams.validation import Columns, Limits, Reject, Validated, validate_batch
from streams.windows import MinuteWindows

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = (
    "ts", "resource_id", "provider_id", "cpu_pct", "mem_pct", "storage_pct", "net_rx_kbps",
    "net_tx_kbps", "late", "ingest_ts", "batch_id", "src_topic", "src_partition", "src_offset",
)  # fmt: skip
#: the samples columns as Arrow types (the insert is built by pyarrow: opscenter.store.AsyncStore.insert_arrow)
SAMPLE_ARROW_TYPES = (
    pa.timestamp("ms", tz="UTC"), pa.string(), pa.string(), pa.float32(), pa.float32(), pa.float32(),
    pa.float32(), pa.float32(), pa.uint8(), pa.timestamp("ms", tz="UTC"), pa.string(), pa.string(),
    pa.uint16(), pa.uint64(),
)  # fmt: skip
BATCH_ID_TTL_S = 7 * 86400
#: how long a catch-up's "this resource is not registered" is trusted before asking again
ABSENT_TTL_S = 10.0

SendFn = Callable[[str, bytes | None, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Message:
    """A Kafka message as the pipeline needs it (decoupled from Faust's Event)."""

    partition: int
    offset: int
    value: bytes
    topic: str = TOPIC_TELEMETRY


def _payload_text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(payload).decode()


def dead_letter(reject: Reject, msg: Message, now_ms: int, index: int = 0) -> DeadLetter:
    return DeadLetter(
        reason=reject.reason,
        detail=reject.detail[:500],
        source=DeadLetterSource(msg.topic, msg.partition, msg.offset),
        provider_id=reject.provider_id,
        payload=_payload_text(reject.payload),
        ingest_ts=datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc),
        batch_id=reject.batch_id,
        index=index,
    )


@dataclass
class IngestPipeline:
    store: AsyncStore
    redis: Redis
    registry: Registry
    send: SendFn  # produce to a topic and wait for the broker's ack
    limits: Limits = Limits()
    windows: MinuteWindows = field(default_factory=MinuteWindows)
    retry_max_s: float = 5.0
    #: an insert takes messages until it holds this many bytes of telemetry (or ``chunk_messages``):
    #: ClickHouse's rollup views cost much less per sample in big blocks (README, "Benchmarks")
    chunk_bytes: int = 32 << 20
    chunk_messages: int = 1000
    #: reads lifecycle.v1 up to its end; asked before a sample is rejected as unregistered
    registry_catch_up: Callable[[], Awaitable[bool]] | None = None
    clock: Callable[[], float] = time.time
    _marks: dict[tuple[str, int], int] | None = None
    #: unregistered-resource verdicts a catch-up confirmed, until when (monotonic)
    _absent: dict[str, float] = field(default_factory=dict)
    _epoch: str = ""
    #: the tail of the batch submitted last (its last insert, then its ``on_stored``)
    _inflight: asyncio.Future | None = None

    def __post_init__(self) -> None:
        self.live = LiveState(self.redis)

    # -- offsets -------------------------------------------------------------------
    async def _load_marks(self) -> dict[tuple[str, int], int]:
        """Highest stored offset per partition of the topic's *current* log (see opscenter.epochs)."""
        self._epoch = await current_epoch(self.store, TOPIC_TELEMETRY)
        rows = await self.store.query(
            "SELECT src_partition, max(max_offset) FROM sink_offsets WHERE src_topic = {t:String} "
            "GROUP BY src_partition",
            {"t": stored_topic(TOPIC_TELEMETRY, self._epoch)},
        )
        return {(TOPIC_TELEMETRY, int(p)): int(o) for p, o in rows}

    def forget_marks(self) -> None:
        """Called on partition revocation: another worker may store further offsets meanwhile."""
        self._marks = None

    # -- the stage -------------------------------------------------------------------
    async def process(self, messages: Sequence[Message]) -> None:
        """Handle one batch of messages; returns only when their samples are stored."""
        await self.submit(messages)
        await self.drain()

    async def drain(self) -> None:
        """Wait until every batch submitted is stored."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    async def submit(self, messages: Sequence[Message], on_stored: Callable[[], Awaitable[None]] | None = None) -> None:
        """Validate a batch and start storing it; return before its last insert has landed.

        The batch is cut into chunks of at most ``chunk_bytes`` / ``chunk_messages`` (in source
        order, so a chunk's token is stable): while ClickHouse inserts one chunk on its thread, the
        next one is validated — and the next *batch* too: the Faust agent submits it while this
        one's last insert runs. Inserts stay in Kafka order (a chunk's insert starts after the one
        before it landed, the previous batch's included), so the highest stored offset per
        partition is always a valid replay mark. ``on_stored`` runs once every sample of this batch
        is stored: the agent acknowledges the batch's messages there, so Faust commits no offset
        before its samples are in ClickHouse.
        """
        prev, self._inflight = self._inflight, None
        if self._marks is None:  # (re)assigned: the marks must include what is still in flight
            if prev is not None:
                await prev
                prev = None
            self._marks = await self._load_marks()
        marks = self._marks
        now_ms = int(self.clock() * 1000)
        fresh = []
        for m in messages:
            metrics.messages_consumed.labels(m.topic).inc()
            if m.offset <= marks.get((m.topic, m.partition), -1):
                metrics.messages_replayed.labels(m.topic).inc()
                continue
            fresh.append(m)
        pending: asyncio.Future | None = prev  # the store in flight (at first, the previous batch's)
        live: list[asyncio.Future] = []
        try:
            for chunk in self._chunks(fresh):
                cols, letters = await self._prepare(chunk, now_ms)
                if cols[0]:
                    # live state (screens, live-metric alerts) does not wait for ClickHouse: the
                    # samples are accepted, and a replay after a crash stores them
                    live.append(asyncio.ensure_future(self._publish_live(cols, now_ms, live[-1] if live else None)))
                if letters:
                    await asyncio.gather(*(self._send_dead_letter(d) for d in letters))
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(self._store(cols, chunk)) if cols[0] else None
                if pending is None:
                    self._advance(chunk)
        except BaseException:
            if pending is not None and pending is not prev and not pending.done():
                pending.cancel()
            if prev is not None and pending is prev and not prev.done():
                self._inflight = prev  # still the next batch's predecessor: inserts stay in order
            if live:
                await asyncio.gather(*live, return_exceptions=True)
            raise
        self._inflight = asyncio.ensure_future(self._finish(pending, live, now_ms if fresh else None, on_stored))

    async def _finish(
        self, pending: asyncio.Future | None, live: list[asyncio.Future], now_ms: int | None,
        on_stored: Callable[[], Awaitable[None]] | None,
    ) -> None:
        """The tail of a submitted batch: its last insert, its live state, then ``on_stored``."""
        try:
            if pending is not None:
                await pending
        finally:
            if live:
                await asyncio.gather(*live, return_exceptions=True)
        if now_ms is not None:
            await self.tick(now_ms)
        if on_stored is not None:
            await on_stored()

    def _chunks(self, messages: list[Message]) -> list[list[Message]]:
        """The messages in source order, cut where a chunk reaches ``chunk_bytes`` or ``chunk_messages``."""
        out: list[list[Message]] = []
        size = 0
        for m in messages:
            if not out or size >= self.chunk_bytes or len(out[-1]) >= self.chunk_messages:
                out.append([])
                size = 0
            out[-1].append(m)
            size += len(m.value)
        return out

    async def _publish_live(self, cols: list[list], now_ms: int, after: asyncio.Future | None) -> None:
        """Newest values per resource to Redis, in chunk order (``after`` = the previous chunk's)."""
        if after is not None:
            await asyncio.gather(after, return_exceptions=True)
        ts, rid, prov, cpu, mem, sto = cols[:6]
        await self.live.publish_latest(rid, prov, ts, cpu, mem, sto, now_ms)

    def _position(self, m: Message) -> str:
        """Where a message sits, in this epoch of its topic (the owner of a batch id in Redis)."""
        return f"{stored_topic(m.topic, self._epoch)}:{m.partition}:{m.offset}"

    def _advance(self, chunk: Sequence[Message]) -> None:
        marks = self._marks if self._marks is not None else {}
        for m in chunk:
            key = (m.topic, m.partition)
            marks[key] = max(marks.get(key, -1), m.offset)

    async def _store(self, cols: list[list], chunk: Sequence[Message]) -> None:
        await self._insert_samples(cols, chunk)
        self._advance(chunk)

    def _validate(self, m: Message, now_ms: int) -> Validated:
        try:
            return validate_batch(m.value, self.registry, now_ms, self.limits)
        except Exception as exc:  # noqa: BLE001 - one bad message must never stop the worker
            log.exception("message %s[%d]@%d could not be validated", m.topic, m.partition, m.offset)
            return Validated("", "", Columns(), [Reject("schema", f"could not be processed: {exc!r}"[:500], m.value)])

    async def _recheck_unregistered(
        self, chunk: Sequence[Message], validated: list[tuple[Message, Validated]], now_ms: int
    ) -> list[tuple[Message, Validated]]:
        """Catch the registry up before samples are dead-lettered as unregistered.

        A resource that a catch-up confirmed unknown is not asked about again for
        ``ABSENT_TTL_S``: a provider streaming for unregistered resources must not make every
        batch wait for a read of lifecycle.v1.
        """
        if self.registry_catch_up is None:
            return validated
        now = time.monotonic()
        unknown = {r.detail for _, v in validated for r in v.rejects if r.reason == "unregistered_resource"}
        if not unknown or all(self._absent.get(d, 0.0) > now for d in unknown):
            return validated
        await self.registry_catch_up()  # (the registry agent may have applied it meanwhile, too)
        validated = [(m, self._validate(m, now_ms)) for m in chunk]
        if len(self._absent) > 100_000:
            self._absent.clear()
        until = time.monotonic() + ABSENT_TTL_S
        for _, v in validated:
            for r in v.rejects:
                if r.reason == "unregistered_resource":
                    self._absent[r.detail] = until
        return validated

    async def _prepare(self, chunk: Sequence[Message], now_ms: int) -> tuple[list[list], list[DeadLetter]]:
        """Validate, deduplicate and window one chunk: sample columns and dead letters."""
        validated = [(m, self._validate(m, now_ms)) for m in chunk]
        validated = await self._recheck_unregistered(chunk, validated, now_ms)
        duplicates = await self._duplicate_batches(validated)

        cols: list[list] = [[] for _ in SAMPLE_COLUMNS]
        letters: list[DeadLetter] = []
        for m, v in validated:
            rejects = list(v.rejects)
            if (m.partition, m.offset) in duplicates:
                rejects = [Reject("duplicate_batch", f"batch {v.batch_id!r} was already received",
                                  m.value, v.provider_id, v.batch_id)]  # fmt: skip
            elif len(v.good):
                g = v.good
                late = self.windows.add(v.provider_id, g.resource_id, g.ts_ms, g.cpu, g.mem, g.storage, now_ms)
                n = len(g)
                for dest, src in zip(
                    cols,
                    (g.ts_ms, g.resource_id, g.provider_id, g.cpu, g.mem, g.storage, g.net_rx, g.net_tx,
                     [int(x) for x in late], [now_ms] * n, [v.batch_id] * n, [stored_topic(m.topic, self._epoch)] * n,
                     [m.partition] * n, [m.offset] * n),
                ):  # fmt: skip
                    dest.extend(src)
                metrics.samples_consumed.labels(v.provider_id).inc(n)
                n_late = late.count(True)
                if n_late:
                    metrics.samples_late.labels(v.provider_id).inc(n_late)
            letters.extend(dead_letter(r, m, now_ms, i) for i, r in enumerate(rejects))
        return cols, letters

    async def tick(self, now_ms: int | None = None) -> None:
        """Close the live minute windows that are due and publish them."""
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        closed = self.windows.close_ready(now_ms, newest_only=True)
        metrics.live_windows.set(len(self.windows))
        if closed:
            await self.live.publish_minutes(closed, now_ms)

    async def _duplicate_batches(self, validated: list) -> set[tuple[int, int]]:
        """Messages whose (provider, batch id) was seen at another Kafka position."""
        keyed = [(m, v) for m, v in validated if v.batch_id and v.provider_id and len(v.good)]
        if not keyed:
            return set()

        async def check() -> list:
            # SET NX GET (Redis ≥ 7): claims the batch id, or answers who claimed it first
            pipe = self.redis.pipeline(transaction=False)
            for m, v in keyed:
                pipe.set(f"opscenter:batch:{v.provider_id}:{v.batch_id}", self._position(m),
                         nx=True, get=True, ex=BATCH_ID_TTL_S)  # fmt: skip
            return await pipe.execute()

        ok, res = await self.live.breaker.call("batch_dedup", check)
        if not ok or res is None:  # Redis down: accept unchecked rather than lose samples
            metrics.dedup_unchecked.inc(len(keyed))
            return set()
        dups = set()
        for (m, _), owner in zip(keyed, res):
            if owner is None:  # claimed now
                continue
            owner = owner.decode() if isinstance(owner, bytes) else owner
            if owner != self._position(m):  # (a replay of the claiming message itself is no duplicate)
                dups.add((m.partition, m.offset))
        return dups

    async def _send_dead_letter(self, d: DeadLetter) -> None:
        from opscenter.wire import TOPIC_DEADLETTER

        await self.send(TOPIC_DEADLETTER, (d.provider_id or "-").encode(), json_encoder.encode(d))
        metrics.deadlettered.labels(d.provider_id or "-", d.reason).inc()

    async def _insert_samples(self, cols: list[list], msgs: Sequence[Message]) -> None:
        """Insert until it lands; the same token on every retry makes a retry harmless."""
        spans: dict[int, list[int]] = {}
        for m in msgs:
            lo_hi = spans.setdefault(m.partition, [m.offset, m.offset])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], m.offset), max(lo_hi[1], m.offset)
        # the epoch keeps a new log's offsets from matching an old log's token (ClickHouse would drop it)
        token = stored_topic(TOPIC_TELEMETRY, self._epoch) + ";" + ";".join(
            f"{p}:{a}-{b}" for p, (a, b) in sorted(spans.items())
        )
        await self.store.insert_retrying("samples", cols, SAMPLE_COLUMNS, token=token, max_delay_s=self.retry_max_s,
                                         arrow_types=SAMPLE_ARROW_TYPES)  # fmt: skip
        metrics.sink_lag_seconds.labels("samples").set(max(0.0, (cols[9][0] - max(cols[0])) / 1000))
