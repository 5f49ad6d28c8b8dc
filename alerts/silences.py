"""Silences (maintenance windows): matchers, a time range, who and why; ``state(silence, now_ms)``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from alerts.model import Matcher, matches_all

PENDING, ACTIVE, EXPIRED = "pending", "active", "expired"


@dataclass(frozen=True)
class Silence:
    """Mutes notifications of alerts whose labels match every matcher, from ``starts_ms`` to ``ends_ms``."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str
    created_ms: int
    updated_ms: int = 0


def state(silence: Silence, now_ms: int) -> str:
    """``pending`` before its start, ``active`` inside its range, ``expired`` from its end on."""
    if now_ms >= silence.ends_ms:
        return EXPIRED
    if now_ms < silence.starts_ms:
        return PENDING
    return ACTIVE


def check(
    matchers: tuple[Matcher, ...], starts_ms: int, ends_ms: int, comment: str
) -> list[tuple[str, str, str]]:
    """Problems of a silence as (field, 中文, English); empty when valid."""
    out = []
    if not matchers:
        out.append(("matchers", "至少需要一个匹配条件", "at least one matcher is required"))
    elif all(m.op in ("=~", "!~") and m.value in (".*", "") for m in matchers):
        out.append(("matchers", "匹配条件不能匹配全部告警", "matchers must not match every alert"))
    if ends_ms <= starts_ms:
        out.append(("ends_at", "结束时间必须晚于开始时间", "ends_at must be after starts_at"))
    if not comment.strip():
        out.append(("comment", "必须填写原因", "a comment (why) is required"))
    return out


def silenced_by(
    labels: Mapping[str, str], silences: Iterable[Silence], now_ms: int
) -> tuple[str, ...]:
    """Ids of the active silences that match ``labels``."""
    return tuple(
        sorted(
            s.id for s in silences if state(s, now_ms) == ACTIVE and matches_all(s.matchers, labels)
        )
    )


def expire(silence: Silence, now_ms: int) -> Silence:
    """The silence ended now (a pending one ends before it starts: it never applies)."""
    if state(silence, now_ms) == EXPIRED:
        return silence
    return replace(
        silence, starts_ms=min(silence.starts_ms, now_ms), ends_ms=now_ms, updated_ms=now_ms
    )


def next_change_ms(silences: Iterable[Silence], now_ms: int) -> int | None:
    """The next start or end of any silence after ``now_ms`` (when muting may change)."""
    times = [t for s in silences for t in (s.starts_ms, s.ends_ms) if t > now_ms]
    return min(times) if times else None
