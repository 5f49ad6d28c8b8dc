"""The incidents stage tags its backlog marks with the topic epoch: a log created anew is no replay."""

from __future__ import annotations

from datetime import UTC, datetime

from opscenter.epochs import new_epoch
from opscenter.services import create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import TOPIC_INCIDENTS
from opscenter.wire_incidents import IncidentEvent, encode
from streams.ingest import Message
from streams.sla_agent import MARKS_KEY, backlog_done, build_domain


def opened(inc: str) -> bytes:
    return encode(IncidentEvent(f"{inc}-0", inc, "opened", datetime.now(UTC), "p1", "P3"))


async def test_marks_of_a_recreated_log_do_not_hide_its_backlog(settings: Settings) -> None:
    await create_topics(settings)
    services = await open_services(settings)
    try:
        first = build_domain(services)
        await first.stage.process([Message(0, i, opened(f"A{i}"), TOPIC_INCIDENTS) for i in range(3)])
        e1 = await first.stage.epoch()
        marks = await services.redis.hgetall(MARKS_KEY)
        assert marks == {f"{e1}:0".encode(): b"2"}
        assert backlog_done(marks, e1, {0: 3}) and not backlog_done(marks, e1, {0: 4})

        # `opscenter up` / `migrate` created the topic anew (the embedded broker keeps nothing) while
        # Redis kept its data: offsets start at 0 again; before the epoch, mark 2 hid this backlog
        e2 = await new_epoch(services.store, TOPIC_INCIDENTS)
        second = build_domain(services)  # a new worker
        assert await second.stage.epoch() == e2 != e1
        assert not backlog_done(marks, e2, {0: 2})
        await second.stage.process([Message(0, i, opened(f"B{i}"), TOPIC_INCIDENTS) for i in range(2)])
        marks = await services.redis.hgetall(MARKS_KEY)
        assert marks == {f"{e2}:0".encode(): b"1"}  # the older log's mark of that partition is dropped
        assert backlog_done(marks, e2, {0: 2})
    finally:
        await services.aclose()
