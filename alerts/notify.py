"""The notify stage: every target of a notice delivered on its own, retried with backoff, dead-lettered.

The one place that retries notifiers. Each (receiver, channel, address) is its own task, so a slow
or failing receiver never delays the others; a :class:`PermanentError` or ``max_tries`` failures
end in a dead-letter :class:`Delivery` record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from alerts.config import Config, NotifyPolicy, WebhookTarget
from alerts.notifiers import NotifyError, PermanentError

log = logging.getLogger(__name__)

DELIVERED, DEAD = "delivered", "dead"


class WebhookSender(Protocol):
    async def send(self, target: WebhookTarget, doc: dict[str, Any]) -> None: ...


class EmailSender(Protocol):
    async def send(self, to: tuple[str, ...], doc: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """The outcome of one target of one notice (``dead`` = given up: the dead-letter record)."""

    notice_id: str
    receiver: str
    channel: str  # webhook | email
    target: str  # URL or addresses
    status: str
    tries: int
    error: str
    at_ms: int


def backoff_s(policy: NotifyPolicy, attempt: int) -> float:
    """Delay before retry ``attempt`` (1-based): base × 2^(attempt-1), capped at max_delay_s."""
    return min(policy.base_delay_s * (2 ** (attempt - 1)), policy.max_delay_s)


class NotifyStage:
    """Delivers notices to their receivers' webhooks and e-mail addresses."""

    def __init__(
        self,
        webhook: WebhookSender,
        email: EmailSender | None,
        on_result: Callable[[Delivery], Awaitable[None]] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.webhook = webhook
        self.email = email
        self.on_result = on_result
        self.sleep = sleep

    def targets(
        self, doc: dict[str, Any], config: Config
    ) -> list[tuple[str, str, str, Callable[[], Awaitable[None]]]]:
        """(receiver, channel, target, send) for every destination of a notice."""
        out: list[tuple[str, str, str, Callable[[], Awaitable[None]]]] = []
        for name in doc.get("receivers", []):
            rec = config.receivers.get(name)
            if rec is None:
                continue
            for hook in rec.webhooks:
                out.append((name, "webhook", hook.url, lambda h=hook: self.webhook.send(h, doc)))
            if rec.emails and self.email is not None:
                out.append(
                    (
                        name,
                        "email",
                        ",".join(rec.emails),
                        lambda to=rec.emails: self.email.send(to, doc),
                    )
                )  # type: ignore[union-attr]
        return out

    async def deliver(self, doc: dict[str, Any], config: Config) -> list[Delivery]:
        """Deliver one notice to every target concurrently; returns one Delivery per target."""
        targets = self.targets(doc, config)
        if not targets:
            return []
        return list(
            await asyncio.gather(*(self._one(doc["id"], t, config.notify) for t in targets))
        )

    async def _one(self, notice_id: str, target: tuple[str, str, str, Callable[[], Awaitable[None]]],
                   policy: NotifyPolicy) -> Delivery:  # fmt: skip
        receiver, channel, address, send = target
        error, tries = "", 0
        status = DEAD
        while tries < policy.max_tries:
            tries += 1
            try:
                await send()
                status, error = DELIVERED, ""
                break
            except PermanentError as exc:
                error = f"permanent: {exc.detail}"
                break
            except NotifyError as exc:
                error = f"retryable: {exc.detail}"
            except Exception as exc:
                error = f"unexpected: {type(exc).__name__}: {exc}"
                log.exception(
                    "notifier %s to %s failed unexpectedly (notice %s)", channel, address, notice_id
                )
            if tries < policy.max_tries:
                await self.sleep(backoff_s(policy, tries))
        result = Delivery(
            notice_id, receiver, channel, address, status, tries, error, int(time.time() * 1000)
        )
        if status == DEAD:
            log.warning(
                "notice %s to %s %s given up after %d tries: %s",
                notice_id,
                channel,
                address,
                tries,
                error,
            )
        if self.on_result is not None:
            try:
                await self.on_result(result)
            except Exception:
                log.exception("recording delivery of notice %s failed", notice_id)
        return result
