"""Webhook notifier: a JSON POST signed with HMAC-SHA256 (``X-Opscenter-Signature: sha256=<hex>``)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import aiohttp
import orjson

from alerts.config import WebhookTarget
from alerts.notifiers import PermanentError, RetryableError

SIGNATURE_HEADER = "X-Opscenter-Signature"
ID_HEADER = "X-Opscenter-Notification-Id"


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=`` + hex HMAC-SHA256 with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is the valid signature of ``body`` (constant-time; for receivers and tests)."""
    return hmac.compare_digest(sign(secret, body), header or "")


class WebhookNotifier:
    """Posts notices to webhook targets over one shared HTTP session."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def send(self, target: WebhookTarget, doc: dict[str, Any]) -> None:
        """POST ``doc``; raise RetryableError or PermanentError when the receiver did not take it."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        body = orjson.dumps(doc)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(target.secret, body),
                   ID_HEADER: str(doc.get("id", "")), "User-Agent": "opscenter-alerts/1"}  # fmt: skip
        try:
            async with self._session.post(
                target.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=target.timeout_s),
                allow_redirects=False,
            ) as resp:  # fmt: skip
                if 200 <= resp.status < 300:
                    return
                text = (await resp.text())[:200]
                if resp.status in (408, 425, 429) or resp.status >= 500:
                    raise RetryableError(f"HTTP {resp.status}: {text}")
                raise PermanentError(f"HTTP {resp.status}: {text}")
        except TimeoutError as exc:
            raise RetryableError(f"timed out after {target.timeout_s}s") from exc
        except aiohttp.InvalidURL as exc:
            raise PermanentError(f"invalid URL: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
