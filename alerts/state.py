"""The alert state machine (firing → acknowledged → resolved) and its transition records; pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from alerts.rules import Fire

FIRING, ACKNOWLEDGED, RESOLVED = "firing", "acknowledged", "resolved"
OPEN_STATES = (FIRING, ACKNOWLEDGED)
SYSTEM = "system"


@dataclass(frozen=True)
class Alert:
    """One alert instance; a fingerprint that fires again after its resolved notice is a new instance."""

    fingerprint: str
    alert_id: str
    rule: str
    labels: Mapping[str, str]
    severity: str
    state: str
    started_ms: int
    updated_ms: int
    group_key: str
    repeat_interval_s: float
    summary_zh: str = ""
    summary_en: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)
    resolved_ms: int = 0
    resolved_by: str = ""
    resolve_reason: str = ""
    ack_by: str = ""
    ack_ms: int = 0
    ack_comment: str = ""
    notified_ms: int = 0  # last firing notification (0: never)
    resolved_notified: bool = False
    receivers_notified: tuple[str, ...] = ()
    escalation_step: int = 1  # next step of the chain (step 0 is the first notification)
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()
    seq: int = 0  # transitions recorded so far

    @property
    def open(self) -> bool:
        """Firing or acknowledged."""
        return self.state in OPEN_STATES

    @property
    def muted(self) -> bool:
        """Silenced or inhibited: kept and listed, but not notified and not escalated."""
        return bool(self.silenced_by or self.inhibited_by)

    @cached_property
    def match_labels(self) -> Mapping[str, str]:
        """Labels silences and inhibition rules match on: identity labels, severity, alertname.

        Computed once per alert object (the engine matches every open alert on each flush; a
        changed alert is a new object), shared: read it, do not change it.
        """
        return {**self.labels, "severity": self.severity, "alertname": self.rule}

    def public(self) -> dict[str, Any]:
        """The alert as JSON-ready data (API, feed, webhooks, e-mail)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}  # (asdict copies deeply: a dict per field)
        d["labels"] = dict(self.labels)
        d["values"] = dict(self.values)
        return d


@dataclass(frozen=True)
class Transition:
    """One recorded change of an alert's state (written to ClickHouse ``alert_transitions``)."""

    alert_id: str
    fingerprint: str
    rule: str
    seq: int
    from_state: str
    to_state: str
    at_ms: int
    actor: str
    reason: str
    severity: str
    labels: Mapping[str, str]
    summary_zh: str
    summary_en: str


def _transition(a: Alert, old: str, actor: str, reason: str, at_ms: int) -> Transition:
    return Transition(a.alert_id, a.fingerprint, a.rule, a.seq, old, a.state, at_ms, actor, reason, a.severity,
                      dict(a.labels), a.summary_zh, a.summary_en)  # fmt: skip


Book = Mapping[str, Alert]


def fire_into(
    book: dict[str, Alert], d: Fire, now_ms: int, group_key: str, repeat_interval_s: float
) -> list[Transition]:
    """Apply a Fire decision to a book the caller owns, in place (a batch copies the book once):
    a new alert, an update of an open one, or a reopened flap."""
    cur = book.get(d.fingerprint)
    if cur is not None and cur.open:
        if cur.severity == d.severity and cur.values == d.values:
            return []
        book[d.fingerprint] = replace(cur, severity=d.severity, values=d.values, summary_zh=d.summary_zh,
                                      summary_en=d.summary_en, updated_ms=now_ms)  # fmt: skip
        return []
    if cur is not None and cur.notified_ms and not cur.resolved_notified:
        # resolved and fired again before the resolved notice went out: a flap, not a new page
        a = replace(cur, state=FIRING, resolved_ms=0, resolved_by="", resolve_reason="", updated_ms=now_ms,
                    values=d.values, seq=cur.seq + 1)  # fmt: skip
        book[d.fingerprint] = a
        return [_transition(a, RESOLVED, SYSTEM, "refired", now_ms)]
    a = Alert(d.fingerprint, f"{d.fingerprint}-{d.at_ms}", d.rule, dict(d.labels), d.severity, FIRING, d.at_ms,
              now_ms, group_key, repeat_interval_s, d.summary_zh, d.summary_en, dict(d.values), seq=1)  # fmt: skip
    book[d.fingerprint] = a
    return [_transition(a, "", SYSTEM, "rule", now_ms)]


def resolve(
    book: Book, fp: str, now_ms: int, actor: str, reason: str
) -> tuple[Book, list[Transition]]:
    """Resolve an open alert; its acknowledgement clears with it (a new firing starts unacknowledged)."""
    cur = book.get(fp)
    if cur is None or not cur.open:
        return book, []
    new = dict(book)
    return new, resolve_into(new, fp, now_ms, actor, reason)


def resolve_into(book: dict[str, Alert], fp: str, now_ms: int, actor: str, reason: str) -> list[Transition]:
    """:func:`resolve` on a book the caller owns, changed in place."""
    cur = book.get(fp)
    if cur is None or not cur.open:
        return []
    a = replace(cur, state=RESOLVED, resolved_ms=now_ms, resolved_by=actor, resolve_reason=reason,
                ack_by="", ack_ms=0, ack_comment="", updated_ms=now_ms, seq=cur.seq + 1)  # fmt: skip
    book[fp] = a
    return [_transition(a, cur.state, actor, reason, now_ms)]


def acknowledge(
    book: Book, fp: str, now_ms: int, actor: str, comment: str
) -> tuple[Book, list[Transition]]:
    """Acknowledge a firing alert: escalation and repeats stop, the alert stays open and visible."""
    cur = book.get(fp)
    if cur is None or cur.state != FIRING:
        return book, []
    a = replace(cur, state=ACKNOWLEDGED, ack_by=actor, ack_ms=now_ms, ack_comment=comment, updated_ms=now_ms,
                seq=cur.seq + 1)  # fmt: skip
    new = dict(book)
    new[fp] = a
    return new, [_transition(a, FIRING, actor, comment or "acknowledged", now_ms)]


def by_alert_id(book: Book, ident: str) -> Alert | None:
    """An alert by its fingerprint or its alert id."""
    if ident in book:
        return book[ident]
    return next((a for a in book.values() if a.alert_id == ident), None)
