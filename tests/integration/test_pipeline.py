"""The ingest stage against the real broker, Valkey and chDB: storage, rollups, dead letters, replays."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import AsyncIterator

import pytest

from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import TOPIC_DEADLETTER, LifecycleEvent, Spec
from streams.ingest import IngestPipeline, Message
from streams.live import latest
from tests.integration.helpers import consume_all, telemetry

NOW_MS = (int(datetime.now(timezone.utc).timestamp() * 1000) // 60_000 - 10) * 60_000  # 10 min ago, aligned
M0 = NOW_MS  # the minute under test


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    await create_topics(settings)
    s = await open_services(settings)
    for rid, provider in [("r1", "p1"), ("r2", "p1"), ("x1", "p2")]:
        s.registry.apply(
            LifecycleEvent(f"e-{rid}", rid, "delivered", datetime.now(timezone.utc), provider, spec=Spec(4, 8, 100))
        )
    yield s
    await s.aclose()


def minute_batch(batch_id: str = "b1") -> bytes:
    # r1: cpu 10, 20, 30, 40 in minute M0; one bad sample (cpu 130) in the middle; r2 one sample
    return telemetry("p1", batch_id, [
        ("r1", M0 + 0, 10.0, 50.0, 70.0),
        ("r1", M0 + 15_000, 20.0, 50.0, 70.0),
        ("r1", M0 + 20_000, 130.0, 50.0, 70.0),
        ("r1", M0 + 30_000, 30.0, 60.0, 70.0),
        ("r1", M0 + 45_000, 40.0, 60.0, 70.0),
        ("r2", M0 + 5_000, 5.0, 5.0, 5.0),
    ])  # fmt: skip


async def count(s: Services, sql: str) -> int:
    return int((await s.store.query(sql))[0][0])


async def test_batch_stored_rolled_up_and_dead_lettered(services: Services, settings: Settings) -> None:
    await services.ingest.process([Message(0, 0, minute_batch())])

    assert await count(services, "SELECT count() FROM samples") == 5
    rows = await services.store.query_dicts(
        "SELECT sum(samples) AS n, sum(cpu_sum) / sum(samples) AS cpu_mean, max(cpu_max) AS cpu_max, "
        "quantileExactInclusiveMerge(0.95)(cpu_q) AS cpu_p95, sum(mem_sum) / sum(samples) AS mem_mean "
        "FROM rollup_1m WHERE resource_id = 'r1' GROUP BY minute"
    )
    # by hand: mean(10,20,30,40) = 25; max 40; p95 = 30 + 0.85 * (40 - 30) = 38.5; mem mean 55
    assert rows == [{"n": 4, "cpu_mean": 25.0, "cpu_max": 40.0, "cpu_p95": pytest.approx(38.5), "mem_mean": 55.0}]
    assert await count(services, "SELECT sum(samples) FROM rollup_1h") == 5
    assert await count(services, "SELECT sum(samples) FROM rollup_1d") == 5

    letters = await consume_all(settings, TOPIC_DEADLETTER, expect=1)
    assert [(d["reason"], d["provider_id"], d["source"]) for d in letters] == [
        ("out_of_range", "p1", {"topic": "telemetry.v1", "partition": 0, "offset": 0})
    ]
    assert '"cpu_pct":130.0' in letters[0]["payload"]

    live = await latest(services.redis, "r1")
    assert live is not None and float(live["cpu"]) == 40.0 and int(live["ts_ms"]) == M0 + 45_000


async def test_replay_after_restart_doubles_nothing(services: Services, settings: Settings) -> None:
    first = [Message(0, i, minute_batch(f"b{i}")) for i in range(3)]
    await services.ingest.process(first)
    assert await count(services, "SELECT count() FROM samples") == 15

    # a "restarted" worker: fresh pipeline state, the last commit lost → offsets 1, 2 come again
    restarted = IngestPipeline(services.store, services.redis, services.registry, services.ingest.send,
                               services.ingest.limits)  # fmt: skip
    await restarted.process([Message(0, i, minute_batch(f"b{i}")) for i in (1, 2, 3)])
    assert await count(services, "SELECT count() FROM samples") == 20
    assert await count(services, "SELECT sum(samples) FROM rollup_1m") == 20
    assert await count(services, "SELECT sum(samples) FROM rollup_1d") == 20
    # the same offsets on another partition are other messages: they count
    await restarted.process([Message(1, 1, minute_batch("c1"))])
    assert await count(services, "SELECT count() FROM samples") == 25


async def test_retried_insert_with_same_token_doubles_nothing(services: Services) -> None:
    cols = [[M0], ["r1"], ["p1"], [1.0], [2.0], [3.0], [None], [None], [0], [M0], ["b"], ["telemetry.v1"], [0], [7]]
    from streams.ingest import SAMPLE_COLUMNS

    for _ in range(3):
        await services.store.insert_columns("samples", cols, SAMPLE_COLUMNS, token="telemetry.v1;0:7-7")
    assert await count(services, "SELECT count() FROM samples") == 1
    assert await count(services, "SELECT sum(samples) FROM rollup_1m") == 1
    assert await count(services, "SELECT sum(samples) FROM rollup_1h") == 1
    assert await count(services, "SELECT max(max_offset) FROM sink_offsets") == 7


async def test_same_batch_id_again_is_a_duplicate(services: Services, settings: Settings) -> None:
    await services.ingest.process([Message(0, 0, minute_batch("same"))])
    await services.ingest.process([Message(0, 1, minute_batch("same"))])
    assert await count(services, "SELECT count() FROM samples") == 5
    letters = await consume_all(settings, TOPIC_DEADLETTER, expect=2)
    assert sorted(d["reason"] for d in letters) == ["duplicate_batch", "out_of_range"]


async def test_foreign_and_unregistered_samples(services: Services, settings: Settings) -> None:
    raw = telemetry("p1", "b", [("x1", M0, 1, 1, 1), ("nope", M0, 1, 1, 1), ("r2", M0, 1, 1, 1)])
    await services.ingest.process([Message(0, 0, raw)])
    assert await count(services, "SELECT count() FROM samples") == 1
    letters = await consume_all(settings, TOPIC_DEADLETTER, expect=2)
    assert sorted(d["reason"] for d in letters) == ["foreign_resource", "unregistered_resource"]
    assert sorted(d["index"] for d in letters) == [0, 1]


async def test_migrations_are_idempotent(services: Services, settings: Settings) -> None:
    import sql
    from opscenter.store import connect, migrate

    client = connect(settings)
    assert migrate(client, settings) == []
    versions = [r[0] for r in client.query("SELECT version FROM schema_migrations FINAL ORDER BY version").result_rows]
    assert versions == [v for v, _, _ in sql.migrations()] and versions[:4] == [1, 2, 3, 4]


async def test_a_new_log_after_a_broker_restart_is_not_mistaken_for_a_replay(services: Services) -> None:
    """The embedded broker restarts its offsets at 0: with a new epoch they are new messages."""
    from opscenter.epochs import new_epoch
    from opscenter.wire import TOPIC_TELEMETRY

    await services.ingest.process([Message(0, i, minute_batch(f"old{i}")) for i in range(3)])
    assert await count(services, "SELECT count() FROM samples") == 15
    # the broker restarts (topics created anew → a new epoch); the same offsets carry new data,
    # in batches whose offset spans equal the old ones (the old insert token must not match)
    await new_epoch(services.store, TOPIC_TELEMETRY)
    restarted = IngestPipeline(services.store, services.redis, services.registry, services.ingest.send,
                               services.ingest.limits)  # fmt: skip
    await restarted.process([Message(0, i, minute_batch(f"new{i}")) for i in range(3)])
    assert await count(services, "SELECT count() FROM samples") == 30
    assert await count(services, "SELECT uniqExact(src_topic) FROM samples") == 2


async def test_live_value_is_each_resources_newest_sample_by_event_time(services: Services) -> None:
    """Out of order within a chunk, the newest by event time wins; of two at the same time, the later one."""
    from streams.live import LiveState

    t = 1_767_225_600_000
    rids = ["lv-a", "lv-b", "lv-a", "lv-b", "lv-a", "lv-b"]
    ts = [t + 30_000, t, t + 10_000, t + 5_000, t + 30_000, t + 5_000]
    cpu = [11.0, 20.0, 12.0, 21.0, 13.0, 22.0]
    await LiveState(services.redis).publish_latest(rids, ["p1"] * 6, ts, cpu, cpu, cpu, t + 60_000)
    a, b = await latest(services.redis, "lv-a"), await latest(services.redis, "lv-b")
    assert (a["ts_ms"], a["cpu"]) == (t + 30_000, 13.0)  # the later of the two at +30 s
    assert (b["ts_ms"], b["cpu"]) == (t + 5_000, 22.0)


async def test_submitted_batches_are_stored_in_order_and_acknowledged_only_once_stored(services: Services) -> None:
    """The agent's pipelining: batch 2 is validated while batch 1 is stored; each batch's
    ``on_stored`` (where Faust's acks go) runs only when its samples are in ClickHouse, in order."""
    seen: list[tuple[str, int]] = []

    def stored(name: str):
        async def run() -> None:
            seen.append((name, await count(services, "SELECT count() FROM samples")))
        return run

    await services.ingest.submit([Message(0, 0, minute_batch("s1"))], on_stored=stored("first"))
    await services.ingest.submit([Message(0, 1, minute_batch("s2")), Message(0, 2, minute_batch("s3"))],
                                 on_stored=stored("second"))  # fmt: skip
    await services.ingest.drain()
    assert seen == [("first", 5), ("second", 15)]
    rows = await services.store.query("SELECT src_offset, count() FROM samples GROUP BY src_offset ORDER BY src_offset")
    assert rows == [(0, 5), (1, 5), (2, 5)]
