"""What the alert engine reads (observations), label matchers and fingerprints; pure."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: the envelope labels every observation carries (events.v1 field → label name)
ENVELOPE_LABELS = {
    "provider_id": "provider",
    "unit_id": "unit",
    "district_id": "district",
    "resource_id": "resource",
    "subject": "subject",
    "severity": "severity",
}
LABEL_NAMES = ("provider", "unit", "district", "resource", "subject", "severity")
SEVERITIES = ("P1", "P2", "P3", "P4")


@dataclass(frozen=True)
class Observation:
    """One input of the engine: an events.v1 event or a live metric sample, by name only."""

    kind: str
    ts_ms: int
    labels: Mapping[str, str]
    data: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = ""

    def get(self, path: str) -> Any:
        """The value at ``path``: a label (``provider``), ``kind``, or ``data.<name>[.<name>…]``."""
        if path == "kind":
            return self.kind
        if path.startswith("data."):
            cur: Any = self.data
            for part in path[5:].split("."):
                if not isinstance(cur, Mapping) or part not in cur:
                    return None
                cur = cur[part]
            return cur
        return self.labels.get(path) or None


def ms(ts: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(ts.timestamp() * 1000)


def from_event(event: Any) -> Observation:
    """An :class:`opscenter.wire.Event` (or anything with its fields) as an observation."""
    labels = {name: str(getattr(event, attr, "") or "") for attr, name in ENVELOPE_LABELS.items()}
    return Observation(
        kind=event.kind,
        ts_ms=ms(event.ts),
        labels={k: v for k, v in labels.items() if v},
        data=dict(event.data or {}),
        event_id=event.event_id,
    )


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """Identity of an alert: a hash of the rule name and its identity labels (sorted)."""
    text = rule + "\x00" + "\x00".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


@dataclass(frozen=True)
class Matcher:
    """An Alertmanager-style label matcher: ``name=value``, ``!=``, ``=~regex``, ``!~regex``."""

    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse ``name<op>value``; raises ValueError on bad syntax or a bad regex."""
        m = _MATCHER.match(text)
        if not m:
            raise ValueError(f"not a matcher: {text!r} (expected name=value, !=, =~ or !~)")
        name, op, value = m.groups()
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression in {text!r}: {exc}") from exc
        return cls(name, op, value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher (a missing label is the empty string)."""
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    """All matchers hold (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)


_NAME = r"[A-Za-z_][A-Za-z0-9_.]*"
#: ``{field}``, or ``{field|other|…}``: the first of them that has a value
_TEMPLATE = re.compile(rf"\{{({_NAME}(?:\|{_NAME})*)\}}")


def template_fields(text: str) -> list[str]:
    """The ``{field}`` names used by a summary template (each alternative of ``{a|b}`` too)."""
    return [f for group in _TEMPLATE.findall(text) for f in group.split("|")]


#: how a value of these fields reads in a summary, per language (the labels keep the wire value:
#: silences, grouping and the API match on ``metric=memory``, ``window=7d``, ``deadline=restore``)
VALUE_NAMES: dict[str, dict[str, dict[str, str]]] = {
    "zh": {"metric": {"cpu": "CPU", "memory": "内存", "mem": "内存", "storage": "存储"},
           "window": {"1h": "1 小时", "24h": "24 小时", "7d": "7 天"},
           "deadline": {"response": "响应", "restore": "恢复"}},
    "en": {"metric": {"cpu": "CPU", "memory": "memory", "mem": "memory", "storage": "storage"},
           "window": {"1h": "1 h", "24h": "24 h", "7d": "7 days"}},
}  # fmt: skip


#: values that come from the rule, not from a measurement: ``超过 90% 已持续 300 秒``, not ``90.0% … 300.0 秒``
_CONFIGURED = frozenset({"threshold", "for_s", "after_s"})


def render(text: str, values: Mapping[str, Any], lang: str = "") -> str:
    """Fill ``{name}`` / ``{data.x}`` placeholders (``{data.x|name}``: the first that is set); a missing
    value renders as ``-``; with ``lang``, a value :data:`VALUE_NAMES` knows reads in that language
    (``memory`` → 内存, ``restore`` → 恢复)."""
    names = VALUE_NAMES.get(lang, {})

    def one(m: re.Match[str]) -> str:
        keys = m.group(1).split("|")
        key = next((k for k in keys if values.get(k) not in (None, "")), keys[-1])
        v = values.get(key)
        if v is None:
            return "-"
        if isinstance(v, float):  # a measurement to one decimal; a configured number as written
            return f"{v:g}" if key in _CONFIGURED and v.is_integer() else f"{v:.1f}"
        v = str(v)
        return names.get(key.removeprefix("data."), {}).get(v, v)

    return _TEMPLATE.sub(one, text)
