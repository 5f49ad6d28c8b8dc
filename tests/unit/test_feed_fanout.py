"""The live feed's fan-out over screens whose sockets the test controls: a slow screen is coalesced
(it only ever has the newest frame waiting), a stuck one is dropped, and neither holds up the others."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from starlette.websockets import WebSocketDisconnect

from dashboard import feed
from dashboard.feed import LiveHub
from opscenter.auth import Principal
from opscenter.inventory import Registry

P1, P2 = Principal("p1-user", "provider", "p1"), Principal("p2-user", "provider", "p2")


class Screen:
    """A websocket whose peer reads only while ``reading`` is set (a screen on a slow or dead link)."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.reading = asyncio.Event()
        self.reading.set()
        self.gone = asyncio.Event()
        self.says: asyncio.Queue[dict] = asyncio.Queue()  # what the screen sends the server

    async def accept(self) -> None:
        pass

    async def send_text(self, text: str) -> None:
        await self.reading.wait()
        self.frames.append(orjson.loads(text))

    async def receive_json(self) -> dict:
        said = asyncio.ensure_future(self.says.get())
        await asyncio.wait([said, asyncio.ensure_future(self.gone.wait())], return_when=asyncio.FIRST_COMPLETED)
        if not said.done():
            said.cancel()
            raise WebSocketDisconnect(1001)
        return said.result()

    def notices(self) -> list[int]:
        return [f["totals"]["notice_ms"] for f in self.frames]


async def until(check, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
async def hub(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A hub without Redis (nothing to follow): the test changes its state and wakes the frame loop.
    Heartbeats only where the test asks for them (``@pytest.mark.parametrize("hub", [s], indirect=True)``)."""
    heartbeat_s = getattr(request, "param", 30.0)
    h = LiveHub(None, Registry(), {}, [], frame_interval_s=0.01, heartbeat_s=heartbeat_s)  # type: ignore[arg-type]
    frames = asyncio.create_task(h._frames())
    yield h
    frames.cancel()
    await asyncio.gather(frames, return_exceptions=True)


def notice(h: LiveHub, ms: int) -> None:
    """What a telemetry notice does to the hub: a newer notice time, and a frame is due."""
    h.notice_ms = ms
    h._changed.set()


async def test_a_slow_screen_gets_only_the_newest_frame_and_holds_up_no_other(hub: LiveHub) -> None:
    slow, quick = Screen(), Screen()
    served = [asyncio.create_task(hub.serve(s)) for s in (slow, quick)]  # type: ignore[arg-type]
    await until(lambda: slow.frames and quick.frames)
    slow.reading.clear()  # its link stalls: the next send to it waits
    for ms in range(1, 31):
        notice(hub, ms)
        await until(lambda ms=ms: quick.notices()[-1] == ms, timeout_s=2.0)  # the others get every frame meanwhile
    assert quick.notices()[1:] == list(range(1, 31))
    assert slow.notices() == [0]  # only the first frame, from before the stall
    slow.reading.set()
    await until(lambda: slow.notices()[-1] == 30)
    # the frame that was in flight when it stalled, then the newest: not the 28 in between
    await asyncio.sleep(0.1)
    assert slow.notices() == [0, 1, 30]
    for s in (slow, quick):
        s.gone.set()
    await asyncio.gather(*served)
    assert not hub.clients


@pytest.mark.parametrize("hub", [0.05], indirect=True)
async def test_a_stuck_screen_is_dropped_after_the_send_timeout(hub: LiveHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed, "SEND_TIMEOUT_S", 0.3)
    stuck, quick = Screen(), Screen()
    stuck.reading.clear()  # never reads: not even the first frame gets through
    t0 = time.monotonic()
    stuck_served = asyncio.create_task(hub.serve(stuck))  # type: ignore[arg-type]
    quick_served = asyncio.create_task(hub.serve(quick))  # type: ignore[arg-type]
    await asyncio.wait_for(stuck_served, timeout=3.0)  # serve() returned: the server closes that socket
    assert time.monotonic() - t0 >= 0.3 and not stuck.frames
    assert [c.ws for c in hub.clients] == [quick]
    seen = len(quick.frames)
    notice(hub, 7)
    await until(lambda: quick.notices()[-1] == 7)  # the feed goes on for the others
    assert len(quick.frames) > seen
    quick.gone.set()
    await quick_served


async def test_a_screen_that_connects_gets_the_newest_frame_of_its_own_scope(hub: LiveHub) -> None:
    first, second, other = Screen(), Screen(), Screen()
    served = [asyncio.create_task(hub.serve(first, P1))]  # type: ignore[arg-type]
    notice(hub, 5)
    await until(lambda: first.notices()[-1:] == [5])
    served.append(asyncio.create_task(hub.serve(second, P1)))  # type: ignore[arg-type]
    await until(lambda: second.frames)
    # not an encoding of its own: the very frame the others of its scope just got
    assert second.frames[0] == first.frames[-1] and second.frames[0]["scope"] == "p1"
    assert time.time() * 1000 - second.frames[0]["ts_ms"] <= feed.SHARED_MAX_AGE_S * 1000
    # a screen of another scope never gets that frame: its own, encoded now
    served.append(asyncio.create_task(hub.serve(other, P2)))  # type: ignore[arg-type]
    await until(lambda: other.frames)
    assert other.frames[0]["scope"] == "p2" and other.frames[0]["seq"] > first.frames[-1]["seq"]
    for s in (first, second, other):
        s.gone.set()
    await asyncio.gather(*served)


async def test_a_snapshot_on_request_and_nothing_else_without_a_change(hub: LiveHub) -> None:
    screen = Screen()
    served = asyncio.create_task(hub.serve(screen))  # type: ignore[arg-type]
    await until(lambda: screen.frames)
    await asyncio.sleep(0.2)
    assert len(screen.frames) == 1  # nothing changed, no heartbeat due (30 s): no frame
    screen.says.put_nowait({"type": "snapshot"})
    await until(lambda: len(screen.frames) == 2)
    assert screen.frames[1]["seq"] > screen.frames[0]["seq"]
    screen.gone.set()
    await served


@pytest.mark.parametrize("hub", [0.05], indirect=True)
async def test_a_heartbeat_frame_when_nothing_changes(hub: LiveHub) -> None:
    screen = Screen()
    served = asyncio.create_task(hub.serve(screen))  # type: ignore[arg-type]
    await until(lambda: len(screen.frames) >= 4, timeout_s=2.0)
    assert [f["seq"] for f in screen.frames] == sorted({f["seq"] for f in screen.frames})  # each a new frame
    screen.gone.set()
    await served
