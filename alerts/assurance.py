"""Assurance periods (重保, §28): a calendar of holidays, major events and meetings; pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

KINDS = ("holiday", "event", "meeting")


@dataclass(frozen=True)
class AssurancePeriod:
    """A named time range in which alerting is tightened and P1/P2 escalate at once."""

    id: str
    name_zh: str
    name_en: str
    starts_ms: int
    ends_ms: int
    kind: str = "event"
    created_by: str = ""


def active(periods: Iterable[AssurancePeriod], now_ms: int) -> AssurancePeriod | None:
    """The period in force at ``now_ms`` (of overlapping ones, the one that ends last)."""
    inside = [p for p in periods if p.starts_ms <= now_ms < p.ends_ms]
    return max(inside, key=lambda p: (p.ends_ms, p.id)) if inside else None


def next_change_ms(periods: Iterable[AssurancePeriod], now_ms: int) -> int | None:
    """The next start or end of any period after ``now_ms``."""
    times = [t for p in periods for t in (p.starts_ms, p.ends_ms) if t > now_ms]
    return min(times) if times else None


def check(doc: dict[str, Any]) -> tuple[AssurancePeriod | None, list[tuple[str, str, str]]]:
    """A period from a plain mapping (API body or calendar file entry), or its problems (field, 中文, English)."""
    problems: list[tuple[str, str, str]] = []
    pid = doc.get("id")
    name_zh, name_en = (
        doc.get("name_zh") or doc.get("name"),
        doc.get("name_en") or doc.get("name_zh") or doc.get("name"),
    )
    if not isinstance(pid, str) or not pid:
        problems.append(("id", "缺少编号", "id is required"))
    if not isinstance(name_zh, str) or not name_zh:
        problems.append(("name_zh", "缺少名称", "a name is required"))
    kind = doc.get("kind", "event")
    if kind not in KINDS:
        problems.append(("kind", "类型无效", f"kind must be one of {', '.join(KINDS)}"))
    times = []
    for f in ("starts_at", "ends_at"):
        v = doc.get(f)
        try:
            t = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
            if t.tzinfo is None:
                raise ValueError("no time zone")
            times.append(int(t.timestamp() * 1000))
        except (TypeError, ValueError):
            problems.append(
                (f, "时间格式错误（需含时区）", f"{f} must be an ISO 8601 time with a time zone")
            )
    if len(times) == 2 and times[1] <= times[0]:
        problems.append(("ends_at", "结束时间必须晚于开始时间", "ends_at must be after starts_at"))
    if problems:
        return None, problems
    return AssurancePeriod(str(pid), str(name_zh), str(name_en), times[0], times[1], str(kind),
                           str(doc.get("created_by", ""))), []  # fmt: skip
