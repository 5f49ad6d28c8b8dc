"""Notifiers against real local receivers: signed webhooks, retries, dead letters, isolation, SMTP."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from alerts.config import parse_config
from alerts.notifiers import PermanentError, RetryableError
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.webhook import SIGNATURE_HEADER, WebhookNotifier, verify
from alerts.notify import DEAD, DELIVERED, Delivery, NotifyStage
from opscenter.embedded import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class WebhookReceiver:
    """An aiohttp server on a free loopback port; ``behaviour[path]`` is a list of (status, delay_s) per call."""

    behaviour: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    port: int = 0
    _runner: Any = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        n = self.calls.get(request.path, 0)
        self.calls[request.path] = n + 1
        plan = self.behaviour.get(request.path, [])
        status, delay_s = plan[n] if n < len(plan) else (plan[-1] if plan else (200, 0.0))
        if delay_s:
            await asyncio.sleep(delay_s)
        if status == 200:
            self.received.append(
                Received(
                    request.path, dict(request.headers), body, asyncio.get_running_loop().time()
                )
            )
        return web.Response(status=status, text="ok" if status == 200 else "no")

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()


DOC = {"v": 1, "id": "n-1", "type": "notification", "status": "firing", "receivers": ["oncall", "lead"],
       "alerts": [{"alert_id": "a-1", "severity": "P1", "state": "firing", "summary_zh": "资源 r1 利用率过高",
                   "summary_en": "r1 high", "labels": {"provider": "p1", "resource": "r1"}}]}  # fmt: skip


def config(url_a: str, url_b: str, smtp_port: int = 25, tries: int = 3) -> Any:
    return parse_config(f"""
receivers:
  oncall: {{webhooks: [{{url: "{url_a}", secret: s3cret, timeout_s: 1}}]}}
  lead: {{webhooks: [{{url: "{url_b}", secret: other, timeout_s: 5}}], emails: [lead@weihai.example]}}
notify: {{max_tries: {tries}, base_delay_s: 0.05, max_delay_s: 0.2}}
smtp: {{host: 127.0.0.1, port: {smtp_port}, sender: opscenter@weihai.example, timeout_s: 2}}
rules: []
""")


@pytest.fixture
async def receiver() -> Any:
    r = await WebhookReceiver().start()
    yield r
    await r.stop()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse: int = 0  # SMTP code to answer RCPT with (0: accept)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse:
            return f"{self.refuse} mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Any:
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    yield box, port
    ctl.stop()


async def test_webhook_is_signed_and_the_signature_verifies(receiver: WebhookReceiver) -> None:
    n = WebhookNotifier()
    cfg = config(receiver.url("/a"), receiver.url("/b"))
    try:
        await n.send(cfg.receivers["oncall"].webhooks[0], DOC)
    finally:
        await n.aclose()
    (got,) = receiver.received
    assert orjson.loads(got.body) == DOC
    assert got.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert verify("s3cret", got.body, got.headers[SIGNATURE_HEADER])
    assert not verify("wrong", got.body, got.headers[SIGNATURE_HEADER])
    assert not verify("s3cret", got.body + b" ", got.headers[SIGNATURE_HEADER])


@pytest.mark.parametrize(
    "status, error", [(503, RetryableError), (429, RetryableError), (400, PermanentError)]
)
async def test_webhook_errors_are_classified(
    receiver: WebhookReceiver, status: int, error: type
) -> None:
    receiver.behaviour["/a"] = [(status, 0.0)]
    n = WebhookNotifier()
    try:
        with pytest.raises(error):
            await n.send(
                config(receiver.url("/a"), receiver.url("/b")).receivers["oncall"].webhooks[0], DOC
            )
    finally:
        await n.aclose()


async def test_timeout_and_refused_connection_are_retryable(receiver: WebhookReceiver) -> None:
    receiver.behaviour["/a"] = [(200, 3.0)]
    cfg = config(receiver.url("/a"), f"http://127.0.0.1:{free_port()}/closed")
    n = WebhookNotifier()
    try:
        t0 = time.monotonic()
        with pytest.raises(RetryableError, match="timed out"):
            await n.send(cfg.receivers["oncall"].webhooks[0], DOC)  # timeout_s 1
        assert time.monotonic() - t0 < 2.5
        with pytest.raises(RetryableError):
            await n.send(cfg.receivers["lead"].webhooks[0], DOC)
    finally:
        await n.aclose()


async def test_stage_retries_with_backoff_then_delivers(receiver: WebhookReceiver) -> None:
    receiver.behaviour["/a"] = [(500, 0), (502, 0), (200, 0)]
    cfg = config(receiver.url("/a"), receiver.url("/b"), tries=5)
    delays: list[float] = []

    async def sleep(s: float) -> None:
        delays.append(s)

    n = WebhookNotifier()
    try:
        stage = NotifyStage(n, None, sleep=sleep)
        doc = {**DOC, "receivers": ["oncall"]}
        (d,) = await stage.deliver(doc, cfg)
    finally:
        await n.aclose()
    assert (d.status, d.tries) == (DELIVERED, 3)
    assert delays == [0.05, 0.1]  # exponential: base, 2 × base
    assert len(receiver.received) == 1


async def test_stage_gives_up_into_a_dead_letter_record(receiver: WebhookReceiver) -> None:
    receiver.behaviour["/a"] = [(500, 0)]
    receiver.behaviour["/b"] = [(404, 0)]
    cfg = config(receiver.url("/a"), receiver.url("/b"), tries=3)
    records: list[Delivery] = []

    async def record(d: Delivery) -> None:
        records.append(d)

    n = WebhookNotifier()
    try:
        stage = NotifyStage(n, None, on_result=record)
        await stage.deliver({**DOC, "receivers": ["oncall", "lead"]}, cfg)
    finally:
        await n.aclose()
    by = {r.target: r for r in records}
    assert (by[receiver.url("/a")].status, by[receiver.url("/a")].tries) == (DEAD, 3)
    assert (by[receiver.url("/b")].status, by[receiver.url("/b")].tries) == (
        DEAD,
        1,
    )  # permanent: no retry
    assert "HTTP 404" in by[receiver.url("/b")].error
    assert receiver.calls == {"/a": 3, "/b": 1}


async def test_a_slow_receiver_never_delays_the_others(receiver: WebhookReceiver) -> None:
    receiver.behaviour["/b"] = [(200, 2.0)]  # lead's endpoint is slow
    cfg = config(receiver.url("/a"), receiver.url("/b"))
    n = WebhookNotifier()
    try:
        stage = NotifyStage(n, None)
        t0 = asyncio.get_running_loop().time()
        task = asyncio.ensure_future(stage.deliver(DOC, cfg))
        while not receiver.received:
            await asyncio.sleep(0.01)
        fast = receiver.received[0]
        assert fast.path == "/a" and fast.at - t0 < 0.5
        results = await task
    finally:
        await n.aclose()
    assert sorted(r.status for r in results) == [DELIVERED, DELIVERED]


async def test_email_through_a_real_smtp_server(smtp: Any) -> None:
    box, port = smtp
    cfg = config("http://127.0.0.1:1/a", "http://127.0.0.1:1/b", smtp_port=port)
    await EmailNotifier(cfg.smtp).send(("lead@weihai.example",), DOC)
    ((mail_from, rcpt, content),) = box.messages
    assert mail_from == "opscenter@weihai.example" and rcpt == ["lead@weihai.example"]
    msg = message_from_bytes(content)
    subject = str(make_header(decode_header(msg["Subject"])))
    assert "告警" in subject and "P1" in subject
    body = msg.get_payload(decode=True).decode()
    assert "资源 r1 利用率过高" in body and "r1 high" in body
    assert msg["X-Opscenter-Notification-Id"] == "n-1"


async def test_email_refused_permanently_and_smtp_down_is_retryable(smtp: Any) -> None:
    box, port = smtp
    box.refuse = 550
    cfg = config("http://127.0.0.1:1/a", "http://127.0.0.1:1/b", smtp_port=port)
    with pytest.raises(PermanentError):
        await EmailNotifier(cfg.smtp).send(("nobody@weihai.example",), DOC)
    down = config("http://127.0.0.1:1/a", "http://127.0.0.1:1/b", smtp_port=free_port())
    with pytest.raises(RetryableError):
        await EmailNotifier(down.smtp).send(("lead@weihai.example",), DOC)
