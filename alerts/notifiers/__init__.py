"""Notifiers: one module per channel; each raises :class:`RetryableError` or :class:`PermanentError`.

Retries and backoff live once, in the stage that calls notifiers (``alerts/notify.py``).
"""

from __future__ import annotations


class NotifyError(Exception):
    """A delivery failed; ``detail`` says why (logged and kept in the dead-letter record)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RetryableError(NotifyError):
    """The receiver may accept a later attempt (timeout, connection refused, 5xx, 429, SMTP 4xx)."""


class PermanentError(NotifyError):
    """Retrying cannot help (4xx other than 408/429, SMTP 5xx, a bad address)."""
