"""ClickHouse access (server over HTTP, or chDB in-process) and the migration runner."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from prometheus_client import Gauge

import sql
from opscenter import metrics
from opscenter.settings import Settings

log = logging.getLogger(__name__)

clickhouse_up = Gauge(
    "opscenter_clickhouse_up", "1 when the last ClickHouse insert or ping of this process succeeded, 0 when it failed",
    registry=metrics.REGISTRY,
)  # fmt: skip
sink_waiting = Gauge(
    "opscenter_sink_waiting_batches", "Batches held in memory waiting for ClickHouse (failed inserts being retried)",
    ["table"], registry=metrics.REGISTRY,
)  # fmt: skip


class ClickHouseUnavailable(ConnectionError):
    """ClickHouse could not be reached (raised by the outage switch, :meth:`AsyncStore.inject_outage`)."""


_lock = threading.Lock()
#: settings of the big telemetry inserts (samples, and through its views the rollups):
#: the views run side by side, and their AggregatingMergeTree targets are not merged at insert
#: time — every reader aggregates (GROUP BY, -Merge), as it must across parts anyway, and the
#: merge pass cost about a fifth of the insert's CPU (README, "Benchmarks")
INSERT_VIEW_SETTINGS = {"parallel_view_processing": 1, "optimize_on_insert": 0}
_clients: dict[tuple[str, str], Client] = {}


def connect(settings: Settings, *, create: bool = True) -> Client:
    """A client on the settings' database (created if missing); one per DSN per process."""
    dsn, db = settings.clickhouse(), settings.clickhouse_database
    with _lock:
        if (dsn, db) in _clients:
            return _clients[(dsn, db)]
        if settings.embedded_clickhouse:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        creds: dict[str, Any] = settings.clickhouse_credentials()  # kept out of the DSN (and so out of logs)
        if not dsn.startswith("chdb:"):
            # One client serves the reader and writer threads. Over HTTP, clickhouse-connect's
            # default session id makes the server (and the client) refuse concurrent queries in
            # one session; the product uses no session state, so no session is asked for.
            creds["autogenerate_session_id"] = False
        if create:
            admin = clickhouse_connect.get_client(dsn=dsn, **creds)
            admin.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")  # db name is configuration
        client = clickhouse_connect.get_client(dsn=dsn, database=db, **creds)
        _clients[(dsn, db)] = client
        return client


def migrate(client: Client, settings: Settings) -> list[int]:
    """Apply every migration not yet recorded, in order; return the versions applied."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query("SELECT version FROM schema_migrations FINAL").result_rows}
    applied = []
    for version, name, text in sql.migrations():
        if version in done:
            continue
        for stmt in sql.statements(text):
            client.command(stmt)
        client.insert("schema_migrations", [[version, name]], column_names=["version", "name"])
        applied.append(version)
        log.info("migration %04d_%s applied", version, name)
    # configurable retention of raw samples (idempotent)
    client.command(
        "ALTER TABLE samples MODIFY TTL toDateTime(ts) + INTERVAL {d:UInt32} DAY",
        parameters={"d": settings.raw_retention_days},
    )
    return applied


class AsyncStore:
    """Runs blocking ClickHouse calls off the event loop, on a small thread pool.

    **Outage switch (fault injection).** :meth:`inject_outage` makes every call of this store
    (inserts, queries, ping) fail with :class:`ClickHouseUnavailable` in its ClickHouse thread,
    where a refused connection would fail, until :meth:`release_outage`. Embedded chDB runs
    inside the process and cannot be stopped from outside, so this is how the tests (and a
    drill on a staging worker) take ClickHouse away; it is never switched on by the product
    itself. docs/faults.md, "ClickHouse unavailable".
    """

    def __init__(self, client: Client, threads: int = 2) -> None:
        self.client = client
        self._outage: str | None = None
        clickhouse_up.set(1)  # connected (open_services migrated through this client)
        # Reads (window refreshes, reports, APIs) and writes (the sinks) get their own threads:
        # a long analytic query must never hold up the inserts the stream is waiting for.
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="clickhouse-read")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-write")

    # -- fault injection ------------------------------------------------------------
    def inject_outage(self, reason: str = "outage injected") -> None:
        """From now on every call fails with :class:`ClickHouseUnavailable` (tests and drills only)."""
        log.warning("ClickHouse outage switched on (%s): every call fails until released", reason)
        self._outage = reason

    def release_outage(self) -> None:
        """End an outage started by :meth:`inject_outage`."""
        if self._outage is not None:
            log.warning("ClickHouse outage switched off")
        self._outage = None

    @property
    def outage(self) -> bool:
        return self._outage is not None

    def _call(self, fn: Any, args: Any, kwargs: Any) -> Any:
        reason = self._outage
        if reason is not None:
            raise ClickHouseUnavailable(f"ClickHouse unavailable ({reason})")
        return fn(*args, **kwargs)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._call(fn, args, kwargs))

    async def _write(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: self._call(fn, args, kwargs))

    async def query(self, text: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        res = await self._run(self.client.query, text, parameters=parameters)
        return res.result_rows

    async def query_dicts(self, text: str, parameters: dict[str, Any] | None = None) -> list[dict]:
        res = await self._run(self.client.query, text, parameters=parameters)
        return [dict(zip(res.column_names, row)) for row in res.result_rows]

    async def insert_columns(
        self,
        table: str,
        columns: Sequence[Sequence[Any]],
        names: Sequence[str],
        token: str | None = None,
    ) -> None:
        settings = {"insert_deduplication_token": token} if token else None
        await self._write(
            self.client.insert,
            table,
            list(columns),
            column_names=list(names),
            column_oriented=True,
            settings=settings,
        )

    async def insert_arrow(
        self, table: str, columns: Sequence[Sequence[Any]], names: Sequence[str], types: Sequence[Any],
        token: str | None = None,
    ) -> None:
        """Insert columns as an Arrow table (``types``: one pyarrow type per column).

        For the big telemetry inserts: pyarrow converts a column in C, where clickhouse-connect's
        Native writer walks it in Python (and holds the interpreter while the stream waits).
        """

        def run() -> Any:
            import pyarrow as pa

            table_ = pa.Table.from_arrays([pa.array(c, type=t) for c, t in zip(columns, types)], names=list(names))
            settings = {**INSERT_VIEW_SETTINGS, **({"insert_deduplication_token": token} if token else {})}
            return self.client.insert_arrow(table, table_, settings=settings)

        await self._write(run)

    async def insert_retrying(
        self, table: str, columns: Sequence[Sequence[Any]], names: Sequence[str], token: str | None = None,
        max_delay_s: float = 5.0, arrow_types: Sequence[Any] | None = None,
    ) -> None:
        """Insert until it lands (ClickHouse down: the caller is back-pressured, nothing is dropped).

        The caller awaits this, so a sink holds at most the batch it is inserting: while
        ClickHouse is down the agent takes no further messages and its offsets are not
        committed (``opscenter_sink_waiting_batches`` counts the batches waiting here).
        """
        delay = 0.1
        waiting = False
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    if arrow_types is not None:
                        await self.insert_arrow(table, columns, names, arrow_types, token=token)
                    else:
                        await self.insert_columns(table, columns, names, token=token)
                    metrics.sink_seconds.labels(table).observe(time.perf_counter() - t0)
                    metrics.sink_batches.labels(table).inc()
                    metrics.sink_rows.labels(table).inc(len(columns[0]) if columns else 0)
                    clickhouse_up.set(1)
                    return
                except Exception as exc:  # noqa: BLE001 - retried with the same token
                    metrics.sink_errors.labels(table).inc()
                    clickhouse_up.set(0)
                    if not waiting:
                        waiting = True
                        sink_waiting.labels(table).inc()
                    log.warning("insert into %s failed (%s); retrying in %.1fs", table, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, max_delay_s)
        finally:
            if waiting:
                sink_waiting.labels(table).dec()

    async def ping(self) -> bool:
        try:
            await self._run(self.client.command, "SELECT 1")
            clickhouse_up.set(1)
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure
            clickhouse_up.set(0)
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._writer.shutdown(wait=False, cancel_futures=True)
