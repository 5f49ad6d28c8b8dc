"""The SLA timer's backlog check (streams.sla_agent.backlog_done): marks tagged with the topic epoch."""

from __future__ import annotations

import pytest

from streams.sla_agent import backlog_done, mark_field

E1, E2 = "e1old000", "e2new000"


@pytest.mark.parametrize(
    "marks, highwater, done",
    [
        ({f"{E2}:0": "9"}, {0: 10}, True),  # processed to the end
        ({f"{E2}:0": "8"}, {0: 10}, False),  # one message left
        ({f"{E2}:0": "9"}, {0: 10, 1: 0}, True),  # an empty partition
        ({f"{E2}:0": "9"}, {0: 10, 1: None}, False),  # a partition not fetched yet
        ({}, {0: 10}, True),  # no marks at all (Redis lost them): cannot tell, do not block the clocks
        ({f"{E1}:0": "5000"}, {0: 10}, False),  # an older log's mark: nothing of this log processed yet
        ({f"{E1}:0": "5000", f"{E2}:0": "9"}, {0: 10}, True),  # the new log's mark counts
        ({f"{E1}:1": "5000"}, {0: 10}, True),  # the older mark is of another partition
        ({"0": "5000"}, {0: 10}, True),  # a mark without an epoch (older format): ignored
        ({f"{E1}:0".encode(): b"3", f"{E2}:1".encode(): b"4"}, {0: 1, 1: 5}, False),  # bytes, as Redis answers
    ],
)  # fmt: skip
def test_backlog_done(marks: dict, highwater: dict, done: bool) -> None:
    assert backlog_done(marks, E2, highwater) is done


def test_mark_field() -> None:
    assert mark_field(f"{E2}:12") == (E2, 12) and mark_field(b"ab:3") == ("ab", 3)
    assert mark_field("3")[0] is None and mark_field("x:y")[0] is None and mark_field(":3")[0] is None
