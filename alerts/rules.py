"""Alert rules as data and their pure evaluation: ``evaluate(state, observation, now_ms, rules)``.

Three rule types, all written against the events.v1 envelope (kind, labels, ``data.<name>``):

- ``threshold``: a number at ``field`` compared with ``value``; fires once it held for ``for_s``,
  resolves on a *separate* recovery condition (hysteresis), optionally held ``recover.for_s``.
- ``nodata``: fires when no matching observation arrived for ``after_s`` (per identity).
- ``event``: fires on an event of a kind (sla_breach, incident opened, band_change …) that
  passes ``where``; resolves on ``resolve_on`` or after ``resolve_after_s`` without a repeat.

No I/O here: time comes in as ``now_ms``, timers go out as :class:`Wake` decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from alerts.model import SEVERITIES, Observation, fingerprint, render

OPS = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
WHERE_OPS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")
DEFAULT_IDENTITY = ("provider", "unit", "district", "resource", "subject")


@dataclass(frozen=True)
class Condition:
    """``path`` (label, ``kind`` or ``data.x``) compared with ``value`` by ``op`` (see WHERE_OPS)."""

    path: str
    op: str
    value: Any

    def test(self, obs: Observation) -> bool:
        """Whether the observation satisfies the condition (a missing value fails all but ne/not_in)."""
        got = obs.get(self.path)
        if self.op == "exists":
            return (got is not None) == bool(self.value)
        if self.op == "eq":
            return got == self.value
        if self.op == "ne":
            return got != self.value
        if self.op == "in":
            return got in self.value
        if self.op == "not_in":
            return got not in self.value
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return False
        return {
            "gt": got > self.value,
            "gte": got >= self.value,
            "lt": got < self.value,
            "lte": got <= self.value,
        }[self.op]


@dataclass(frozen=True)
class Selector:
    """Which observations a rule reads: kinds (empty = any) and conditions that must all hold."""

    kinds: tuple[str, ...] = ()
    where: tuple[Condition, ...] = ()

    def test(self, obs: Observation) -> bool:
        """Whether ``obs`` is selected."""
        return (not self.kinds or obs.kind in self.kinds) and all(c.test(obs) for c in self.where)


@dataclass(frozen=True)
class Threshold:
    """Fire when ``value op threshold`` held ``for_s``; resolve when ``recover_op recover_value``."""

    field: str
    op: str
    value: float
    for_s: float
    recover_op: str
    recover_value: float
    recover_for_s: float = 0.0


@dataclass(frozen=True)
class Rule:
    """One rule of the rule file (validated by :func:`alerts.config.load_config`)."""

    name: str
    type: str  # threshold | nodata | event
    select: Selector
    severity: str  # P1..P4 (or the default when taken from the event)
    severity_from_event: bool = False
    identity: tuple[str, ...] = DEFAULT_IDENTITY
    group_by: tuple[str, ...] = ("provider",)
    repeat_interval_s: float = 3600.0
    summary_zh: str = ""
    summary_en: str = ""
    threshold: Threshold | None = None
    #: the threshold inside an assurance period (§28), if the rule tightens
    assurance_threshold: Threshold | None = None
    after_s: float = 0.0  # nodata
    assurance_after_s: float | None = None
    resolve_on: Selector | None = None  # event
    resolve_after_s: float | None = None  # event


@dataclass(frozen=True)
class Entry:
    """Evaluation state of one (rule, identity): a running hold, an active alert, last seen."""

    rule: str
    labels: Mapping[str, str]
    severity: str
    active: bool = False
    pending_since_ms: int | None = None
    recover_since_ms: int | None = None
    last_seen_ms: int = 0
    values: Mapping[str, Any] = field(default_factory=dict)


#: rule state: fingerprint → entry (a frozen mapping by convention: evaluate returns a new one)
RuleState = Mapping[str, Entry]


@dataclass(frozen=True)
class Fire:
    """An alert is (still) firing; the state machine deduplicates."""

    rule: str
    fingerprint: str
    labels: Mapping[str, str]
    severity: str
    at_ms: int
    values: Mapping[str, Any]
    summary_zh: str
    summary_en: str


@dataclass(frozen=True)
class Resolve:
    """An alert's condition cleared."""

    rule: str
    fingerprint: str
    at_ms: int
    reason: str


@dataclass(frozen=True)
class Wake:
    """Evaluate again at ``at_ms`` even if nothing arrives (a hold, a deadline)."""

    at_ms: int


Decision = Fire | Resolve | Wake


def identity_labels(rule: Rule, obs: Observation) -> dict[str, str]:
    """The labels that identify the rule's alert; ``data.metric`` becomes label ``metric``."""
    out = {}
    for k in rule.identity:
        v = obs.get(k)
        if v is not None and v != "":
            out[k.removeprefix("data.")] = str(v)
    return out


def severity_of(rule: Rule, obs: Observation) -> str:
    """The rule's severity, or the event's own (P1–P4) when the rule says ``from_event``."""
    if rule.severity_from_event and obs.labels.get("severity") in SEVERITIES:
        return obs.labels["severity"]
    return rule.severity


def _values(
    obs: Observation, labels: Mapping[str, str], extra: Mapping[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = dict(obs.labels)
    out.update(labels)
    out["kind"] = obs.kind

    def walk(prefix: str, doc: Mapping[str, Any]) -> None:
        for k, v in doc.items():
            if isinstance(v, Mapping):
                walk(f"{prefix}{k}.", v)
            elif isinstance(v, (str, int, float, bool)) or v is None:
                out[f"{prefix}{k}"] = v

    walk("data.", obs.data)
    out.update(extra)
    return out


def _fire(rule: Rule, e: Entry, at_ms: int) -> Fire:
    fp = fingerprint(rule.name, e.labels)
    vals = {"rule": rule.name, "severity": e.severity, **e.values}
    return Fire(rule.name, fp, dict(e.labels), e.severity, at_ms, dict(e.values),
                render(rule.summary_zh, vals, "zh"), render(rule.summary_en, vals, "en"))  # fmt: skip


def threshold_of(rule: Rule, assurance: bool) -> Threshold:
    """The threshold in force: the tighter assurance one inside an assurance period."""
    assert rule.threshold is not None
    return rule.assurance_threshold if assurance and rule.assurance_threshold else rule.threshold


def evaluate(
    state: RuleState,
    obs: Observation,
    now_ms: int,
    rules: tuple[Rule, ...],
    *,
    assurance: bool = False,
) -> tuple[RuleState, list[Decision]]:
    """Apply one observation to every rule; return the new state and the decisions."""
    changes: dict[str, Entry | None] = {}
    out = _evaluate(state, changes, obs, now_ms, rules, assurance)
    if not changes:
        return state, out
    new = dict(state)
    _settle(new, changes)
    return new, out


def evaluate_into(
    work: dict[str, Entry],
    obs: Observation,
    now_ms: int,
    rules: tuple[Rule, ...],
    *,
    assurance: bool = False,
) -> list[Decision]:
    """:func:`evaluate` on a working copy the caller owns, changed in place.

    A batch copies the state once (:func:`alerts.engine.observe_many`), not once per
    observation: with thousands of entries, a copy per event made a batch quadratic.
    """
    changes: dict[str, Entry | None] = {}
    out = _evaluate(work, changes, obs, now_ms, rules, assurance)
    _settle(work, changes)
    return out


def _evaluate(state: RuleState, changes: dict[str, Entry | None], obs: Observation, now_ms: int,
              rules: tuple[Rule, ...], assurance: bool) -> list[Decision]:  # fmt: skip
    """The decisions of one observation; the entries it changes go to ``changes`` (None: removed)."""
    out: list[Decision] = []
    for rule in rules:
        if rule.type != "event" and not rule.select.test(obs):
            continue
        labels = identity_labels(rule, obs)
        fp = fingerprint(rule.name, labels)
        cur = changes[fp] if fp in changes else state.get(fp)
        nxt = _step(rule, cur, obs, labels, now_ms, assurance, out)
        if nxt is not cur:
            changes[fp] = nxt
    return out


def _settle(work: dict[str, Entry], changes: Mapping[str, Entry | None]) -> None:
    for fp, e in changes.items():
        if e is None:
            work.pop(fp, None)
        else:
            work[fp] = e


def _step(rule: Rule, e: Entry | None, obs: Observation, labels: dict[str, str], now_ms: int,
          assurance: bool, out: list[Decision]) -> Entry | None:  # fmt: skip
    ts = obs.ts_ms
    if rule.type == "event":
        if rule.select.test(obs):
            e = Entry(rule.name, labels, severity_of(rule, obs), True, last_seen_ms=max(ts, e.last_seen_ms if e else 0),
                      values=_values(obs, labels, {}))  # fmt: skip
            out.append(_fire(rule, e, ts))
            if rule.resolve_after_s is not None:
                out.append(Wake(e.last_seen_ms + int(rule.resolve_after_s * 1000)))
            return e
        if rule.resolve_on is not None and rule.resolve_on.test(obs):
            # also without an entry: an alert rebuilt from ClickHouse has none (resolving nothing is a no-op)
            out.append(Resolve(rule.name, fingerprint(rule.name, labels), ts, "resolved_by_event"))
            return None
        return e
    if rule.type == "nodata":
        after_ms = int(
            (rule.assurance_after_s if assurance and rule.assurance_after_s else rule.after_s)
            * 1000
        )
        if e is not None and e.active:
            out.append(Resolve(rule.name, fingerprint(rule.name, labels), ts, "data_resumed"))
        seen = max(ts, e.last_seen_ms if e and not e.active else 0)
        out.append(Wake(seen + after_ms))
        return Entry(rule.name, labels, severity_of(rule, obs), False, last_seen_ms=seen,
                     values=_values(obs, labels, {"after_s": after_ms / 1000}))  # fmt: skip
    # threshold
    thr = threshold_of(rule, assurance)
    v = obs.get(thr.field)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return e
    if e is not None and ts < e.last_seen_ms:
        return e  # older than what we judged already
    extra = {"value": v, "threshold": thr.value, "for_s": thr.for_s}
    if e is None or not e.active:
        if not OPS[thr.op](v, thr.value):
            return None  # a hold in progress is broken by one good value
        since = e.pending_since_ms if e is not None and e.pending_since_ms is not None else ts
        e = Entry(
            rule.name,
            labels,
            severity_of(rule, obs),
            False,
            since,
            None,
            ts,
            _values(obs, labels, extra),
        )
        if ts - since >= thr.for_s * 1000:
            e = replace(e, active=True, pending_since_ms=None)
            out.append(_fire(rule, e, ts))
        else:
            out.append(Wake(since + int(thr.for_s * 1000)))
        return e
    # active: only the recovery condition ends it (hysteresis)
    if OPS[thr.recover_op](v, thr.recover_value):
        since = e.recover_since_ms if e.recover_since_ms is not None else ts
        if ts - since >= thr.recover_for_s * 1000:
            out.append(Resolve(rule.name, fingerprint(rule.name, labels), ts, "recovered"))
            return None
        out.append(Wake(since + int(thr.recover_for_s * 1000)))
        return replace(e, recover_since_ms=since, last_seen_ms=ts)
    if e.recover_since_ms is not None:
        return replace(e, recover_since_ms=None, last_seen_ms=ts)
    return e  # unchanged: no state write while an alert simply stays above its threshold


def tick(state: RuleState, now_ms: int, rules: tuple[Rule, ...], *, assurance: bool = False
         ) -> tuple[RuleState, list[Decision]]:  # fmt: skip
    """Fire or resolve what is due at ``now_ms`` without new input (holds, nodata, timeouts)."""
    by_name = {r.name: r for r in rules}
    new: dict[str, Entry] | None = None
    out: list[Decision] = []
    for fp, e in state.items():
        rule = by_name.get(e.rule)
        nxt: Entry | None = e
        if rule is None:
            nxt = None  # the rule was removed by a reload
            if e.active:
                out.append(Resolve(e.rule, fp, now_ms, "rule_removed"))
        elif rule.type == "threshold":
            thr = threshold_of(rule, assurance)
            if not e.active and e.pending_since_ms is not None:
                due = e.pending_since_ms + int(thr.for_s * 1000)
                if now_ms >= due:
                    nxt = replace(e, active=True, pending_since_ms=None)
                    out.append(_fire(rule, nxt, now_ms))
                else:
                    out.append(Wake(due))
            elif e.active and e.recover_since_ms is not None:
                due = e.recover_since_ms + int(thr.recover_for_s * 1000)
                if now_ms >= due:
                    out.append(Resolve(rule.name, fp, now_ms, "recovered"))
                    nxt = None
                else:
                    out.append(Wake(due))
        elif rule.type == "nodata" and not e.active:
            after_s = (
                rule.assurance_after_s if assurance and rule.assurance_after_s else rule.after_s
            )
            due = e.last_seen_ms + int(after_s * 1000)
            if now_ms >= due:
                nxt = replace(e, active=True)
                out.append(_fire(rule, nxt, now_ms))
            else:
                out.append(Wake(due))
        elif rule.type == "event" and e.active and rule.resolve_after_s is not None:
            due = e.last_seen_ms + int(rule.resolve_after_s * 1000)
            if now_ms >= due:
                out.append(Resolve(rule.name, fp, now_ms, "timed_out"))
                nxt = None
            else:
                out.append(Wake(due))
        if nxt is not e:
            if new is None:
                new = dict(state)
            if nxt is None:
                new.pop(fp)
            else:
                new[fp] = nxt
    return (new if new is not None else state), out


def forget(state: RuleState, fp: str) -> RuleState:
    """Drop a (manually resolved) alert's evaluation state so the rule can fire it anew."""
    e = state.get(fp)
    if e is None:
        return state
    new = dict(state)
    new.pop(fp)
    return new
