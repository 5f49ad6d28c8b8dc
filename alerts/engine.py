"""The alert pipeline, pure: rules → state → inhibit → silence → dedup/group → escalate → notices.

Every entry point takes the whole :class:`EngineState`, ``now_ms`` and the :class:`Config`, and
returns a new state plus an :class:`Output` (notices to deliver, transitions to record, times to
wake up at). The agent persists the state and the output; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from alerts import assurance as assurance_mod
from alerts import grouping, rules, silences
from alerts import state as st
from alerts.assurance import AssurancePeriod
from alerts.config import Config
from alerts.escalation import due_steps
from alerts.inhibit import index_sources, inhibited_by_index
from alerts.model import Observation
from alerts.silences import Silence

NOTIFICATION, ESCALATION, ACK, SILENCE, ASSURANCE = (
    "notification",
    "escalation",
    "ack",
    "silence",
    "assurance",
)


@dataclass(frozen=True)
class EngineState:
    """Everything the engine knows; persisted entry by entry (see alerts/persist.py)."""

    rules: rules.RuleState = field(default_factory=dict)
    alerts: st.Book = field(default_factory=dict)
    groups: grouping.Groups = field(default_factory=dict)
    silences: Mapping[str, Silence] = field(default_factory=dict)
    periods: Mapping[str, AssurancePeriod] = field(default_factory=dict)
    #: id of the assurance period last announced on the feed ("" = none)
    announced_period: str = ""


@dataclass(frozen=True)
class Notice:
    """A message for the console feed and, if ``receivers`` is not empty, for those receivers."""

    id: str
    type: str
    at_ms: int
    status: str = ""
    receivers: tuple[str, ...] = ()
    group_key: str = ""
    alerts: tuple[dict[str, Any], ...] = ()
    step: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def message(self) -> dict[str, Any]:
        """The JSON document published on ``opscenter:alerts`` and posted to webhooks (docs/alerts.md)."""
        doc: dict[str, Any] = {"v": 1, "id": self.id, "type": self.type, "at_ms": self.at_ms}
        if self.type in (NOTIFICATION, ESCALATION):
            doc.update(status=self.status, receivers=list(self.receivers), group_key=self.group_key,
                       alerts=list(self.alerts))  # fmt: skip
        if self.type == ESCALATION:
            doc["step"] = self.step
        if self.type == ACK:
            doc["alerts"] = list(self.alerts)
        doc.update(self.extra)
        return doc


@dataclass
class Output:
    """What one engine call produced, for the agent to persist, publish and deliver."""

    notices: list[Notice] = field(default_factory=list)
    transitions: list[st.Transition] = field(default_factory=list)
    wakes: set[int] = field(default_factory=set)


def _id(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:20]


def period_now(state: EngineState, now_ms: int) -> AssurancePeriod | None:
    """The assurance period in force."""
    return assurance_mod.active(state.periods.values(), now_ms)


def observe(
    state: EngineState, obs: Observation, now_ms: int, config: Config
) -> tuple[EngineState, Output]:
    """One event or sample through the whole pipeline."""
    period = period_now(state, now_ms)
    rs, decisions = rules.evaluate(
        state.rules, obs, now_ms, config.rules, assurance=period is not None
    )
    return _apply(replace(state, rules=rs), decisions, now_ms, config)


def observe_many(
    state: EngineState, observations: list[Observation], now_ms: int, config: Config
) -> tuple[EngineState, Output]:
    """A batch of events or samples: every rule decision in order, then one flush.

    The same transitions as :func:`observe` one by one, but muting, grouping and notifying run
    once per batch instead of once per observation (which made a batch quadratic in the number
    of alerts: thousands of live rows against thousands of alerts held the event loop).
    """
    period = period_now(state, now_ms)
    work: dict[str, rules.Entry] | None = None  # the rule state, copied once for the batch
    decisions: list[rules.Decision] = []
    quiet = quiet_metric_test(state, config) if len(observations) > 1 else None
    for obs in observations:
        if quiet is not None and quiet(obs):
            continue
        if work is None:
            work = dict(state.rules)
        decisions += rules.evaluate_into(work, obs, now_ms, config.rules, assurance=period is not None)
    return _apply(state if work is None else replace(state, rules=work), decisions, now_ms, config)


def quiet_metric_parts(
    state: EngineState, config: Config
) -> tuple[list[tuple[str, Callable[[Any, Any], bool], float]], set[str]] | None:
    """(firing checks as (field, op, value), resources with an entry) behind :func:`quiet_metric_test`."""
    checks: list[tuple[str, Callable[[Any, Any], bool], float]] = []
    metric_rules: set[str] = set()
    for r in config.rules:
        reads = [sel for sel in (r.select, r.resolve_on) if sel is not None]
        if not any(not sel.kinds or "metric" in sel.kinds for sel in reads):
            continue
        if r.type != "threshold":
            return None
        metric_rules.add(r.name)
        for t in (r.threshold, r.assurance_threshold):
            if t is not None:
                checks.append((t.field, rules.OPS[t.op], t.value))
    watched: set[str] = set()
    for e in state.rules.values():
        if e.rule in metric_rules:
            rid = e.labels.get("resource")
            if not rid:
                return None
            watched.add(rid)
    return checks, watched


def quiet_metric_test(state: EngineState, config: Config) -> Callable[[Observation], bool] | None:
    """A test for live ``metric`` samples that cannot change anything, or None when there is none.

    A sample can only matter to a threshold rule if it meets a firing condition (the normal or
    the assurance threshold) or if the rule already holds an entry (pending or firing) for its
    resource. The live feed brings every resource once a second; in a city of thousands, almost
    all are quiet, and skipping them keeps the engine's lock short. The test exists only when
    it is exact: every rule that can read a metric sample is a threshold rule, and every entry
    of such a rule is identified by its resource. The test is used for one batch in order: a
    resource whose sample was evaluated is watched for the rest of the batch (a sample that
    starts a hold and a quiet one after it in the same batch: the quiet one ends the hold).
    """
    parts = quiet_metric_parts(state, config)
    if parts is None:
        return None
    checks, watched = parts

    def quiet(obs: Observation) -> bool:
        rid = obs.labels.get("resource", "")
        if obs.kind == "metric" and rid not in watched:
            for name, op, value in checks:
                v = obs.get(name)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and op(v, value):
                    break
            else:
                return True
        if rid:  # evaluated: from now on it may hold an entry, so its later samples in the batch count
            watched.add(rid)
        return False

    return quiet


def tick(state: EngineState, now_ms: int, config: Config) -> tuple[EngineState, Output]:
    """Whatever is due at ``now_ms`` without new input: holds, nodata, groups, repeats, escalations."""
    period = period_now(state, now_ms)
    rs, decisions = rules.tick(state.rules, now_ms, config.rules, assurance=period is not None)
    return _apply(replace(state, rules=rs), decisions, now_ms, config)


def acknowledge(state: EngineState, ident: str, actor: str, comment: str, now_ms: int, config: Config
                ) -> tuple[EngineState, Output]:  # fmt: skip
    """Acknowledge an open alert (by fingerprint or alert id); a no-op output if it is not firing."""
    a = st.by_alert_id(state.alerts, ident)
    out = Output()
    if a is None:
        return state, out
    book, tr = st.acknowledge(state.alerts, a.fingerprint, now_ms, actor, comment)
    out.transitions += tr
    if tr:
        out.notices.append(
            Notice(
                _id("ack", a.alert_id, now_ms), ACK, now_ms, alerts=(book[a.fingerprint].public(),)
            )
        )
    return _flush(replace(state, alerts=book), now_ms, config, out)


def resolve(state: EngineState, ident: str, actor: str, reason: str, now_ms: int, config: Config
            ) -> tuple[EngineState, Output]:  # fmt: skip
    """Resolve an open alert by hand (a reason is required by the API); the rule may fire it anew."""
    a = st.by_alert_id(state.alerts, ident)
    out = Output()
    if a is None or not a.open:
        return state, out
    book, tr = st.resolve(state.alerts, a.fingerprint, now_ms, actor, reason)
    out.transitions += tr
    state = replace(state, alerts=book, rules=rules.forget(state.rules, a.fingerprint))
    return _flush(state, now_ms, config, out)


def put_silence(
    state: EngineState, silence: Silence, now_ms: int, config: Config
) -> tuple[EngineState, Output]:
    """Create or replace a silence (matching alerts stop notifying at once)."""
    out = Output()
    out.notices.append(Notice(_id("silence", silence.id, now_ms), SILENCE, now_ms,
                              extra={"silence": silence_public(silence, now_ms)}))  # fmt: skip
    return _flush(
        replace(state, silences={**state.silences, silence.id: silence}), now_ms, config, out
    )


def expire_silence(
    state: EngineState, silence_id: str, now_ms: int, config: Config
) -> tuple[EngineState, Output]:
    """End a silence now; alerts it muted that still fire are notified."""
    cur = state.silences.get(silence_id)
    if cur is None:
        return state, Output()
    return put_silence(state, silences.expire(cur, now_ms), now_ms, config)


def put_period(
    state: EngineState, period: AssurancePeriod, now_ms: int, config: Config
) -> tuple[EngineState, Output]:
    """Create or replace an assurance period."""
    return _flush(
        replace(state, periods={**state.periods, period.id: period}), now_ms, config, Output()
    )


def delete_period(
    state: EngineState, period_id: str, now_ms: int, config: Config
) -> tuple[EngineState, Output]:
    """Remove an assurance period."""
    periods = {k: v for k, v in state.periods.items() if k != period_id}
    return _flush(replace(state, periods=periods), now_ms, config, Output())


def silence_public(s: Silence, now_ms: int) -> dict[str, Any]:
    """A silence as JSON-ready data, with its state at ``now_ms``."""
    return {"id": s.id, "matchers": [str(m) for m in s.matchers], "starts_ms": s.starts_ms, "ends_ms": s.ends_ms,
            "created_by": s.created_by, "comment": s.comment, "created_ms": s.created_ms,
            "updated_ms": s.updated_ms, "state": silences.state(s, now_ms)}  # fmt: skip


def period_public(p: AssurancePeriod, now_ms: int) -> dict[str, Any]:
    """An assurance period as JSON-ready data, with whether it is active and the time left."""
    inside = p.starts_ms <= now_ms < p.ends_ms
    return {"id": p.id, "name_zh": p.name_zh, "name_en": p.name_en, "kind": p.kind, "starts_ms": p.starts_ms,
            "ends_ms": p.ends_ms, "active": inside, "remaining_s": (p.ends_ms - now_ms) / 1000 if inside else None}  # fmt: skip


def _apply(state: EngineState, decisions: list[rules.Decision], now_ms: int, config: Config
           ) -> tuple[EngineState, Output]:  # fmt: skip
    out = Output()
    book: dict[str, st.Alert] | None = None  # the alerts, copied once for the batch
    by_name = {r.name: r for r in config.rules}
    for d in decisions:
        if isinstance(d, rules.Wake):
            out.wakes.add(d.at_ms)
            continue
        if book is None:
            book = dict(state.alerts)
        if isinstance(d, rules.Fire):
            rule = by_name[d.rule]
            out.transitions += st.fire_into(
                book, d, now_ms, grouping.group_key(rule.group_by, d.labels), rule.repeat_interval_s
            )
        elif isinstance(d, rules.Resolve):
            out.transitions += st.resolve_into(book, d.fingerprint, now_ms, st.SYSTEM, d.reason)
    return _flush(state if book is None else replace(state, alerts=book), now_ms, config, out)


def _flush(
    state: EngineState, now_ms: int, config: Config, out: Output
) -> tuple[EngineState, Output]:
    """Mute, deduplicate, group, notify, escalate and prune, as of ``now_ms``."""
    period = period_now(state, now_ms)
    book = dict(state.alerts)
    sources = index_sources(((fp, a.match_labels) for fp, a in book.items() if a.open), config.inhibit)
    active_silences = [s for s in state.silences.values() if silences.state(s, now_ms) == silences.ACTIVE]
    wait_ms = int(config.group_wait_s * 1000)
    adds: list[tuple[str, str]] = []  # (group, fingerprint) to notify, in order
    for fp, a in list(book.items()):
        if a.state == st.RESOLVED:
            if a.notified_ms and not a.resolved_notified:
                adds.append((a.group_key, fp))
            continue
        labels = a.match_labels
        sil = silences.silenced_by(labels, active_silences, now_ms) if active_silences else ()
        inh = inhibited_by_index(fp, labels, sources)
        if sil != a.silenced_by or inh != a.inhibited_by:
            a = book[fp] = replace(a, silenced_by=sil, inhibited_by=inh)
        if a.muted or a.state != st.FIRING:
            continue
        repeat_at = a.notified_ms + int(a.repeat_interval_s * 1000)
        if not a.notified_ms or now_ms >= repeat_at:
            adds.append((a.group_key, fp))
        else:
            out.wakes.add(repeat_at)
    groups = grouping.add_all(state.groups, adds, now_ms, wait_ms)
    for g in grouping.due(groups, now_ms):
        groups = {k: v for k, v in groups.items() if k != g.key}
        notice = _group_notice(g, book, now_ms, config)
        if notice is not None:
            out.notices.append(notice)
    out.wakes.update(g.flush_at_ms for g in groups.values())
    for fp, a in list(book.items()):
        if a.state != st.FIRING or a.muted or not a.notified_ms:
            continue
        chain = config.escalation.get(a.severity, ())
        immediate = period is not None and a.severity in config.immediate_severities
        due, next_at = due_steps(chain, a.escalation_step, a.started_ms, now_ms, immediate)
        for i in due:
            a = replace(a, escalation_step=i + 1,
                        receivers_notified=_union(a.receivers_notified, chain[i].receivers))  # fmt: skip
            out.notices.append(Notice(_id("esc", a.alert_id, i), ESCALATION, now_ms, st.FIRING, chain[i].receivers,
                                      a.group_key, (a.public(),), step=i))  # fmt: skip
        book[fp] = a
        if next_at is not None:
            out.wakes.add(next_at)
    nxt = silences.next_change_ms(state.silences.values(), now_ms)
    if nxt is not None:
        out.wakes.add(nxt)
    nxt = assurance_mod.next_change_ms(state.periods.values(), now_ms)
    if nxt is not None:
        out.wakes.add(nxt)
    retention_ms = int(config.resolved_retention_s * 1000)
    pending = {fp for g in groups.values() for fp in g.fingerprints}
    for fp, a in list(book.items()):
        done = a.resolved_notified or not a.notified_ms
        if (
            a.state == st.RESOLVED
            and done
            and fp not in pending
            and now_ms - a.resolved_ms >= retention_ms
        ):
            del book[fp]
        elif a.state == st.RESOLVED and done and fp not in pending:
            out.wakes.add(a.resolved_ms + retention_ms)
    expired = {
        k
        for k, s in state.silences.items()
        if now_ms - s.ends_ms >= retention_ms and s.ends_ms <= now_ms
    }
    sil_map = (
        {k: v for k, v in state.silences.items() if k not in expired} if expired else state.silences
    )
    state = replace(state, alerts=book, groups=groups, silences=sil_map)
    return _announce(state, period, now_ms, out)


def _announce(state: EngineState, period: AssurancePeriod | None, now_ms: int, out: Output
              ) -> tuple[EngineState, Output]:  # fmt: skip
    pid = period.id if period else ""
    if pid != state.announced_period:
        extra = {
            "active": period is not None,
            "period": period_public(period, now_ms) if period else None,
        }
        out.notices.append(Notice(_id("assurance", pid, now_ms), ASSURANCE, now_ms, extra=extra))
        state = replace(state, announced_period=pid)
    return state, out


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a + b))


def _group_notice(
    g: grouping.PendingGroup, book: dict[str, st.Alert], now_ms: int, config: Config
) -> Notice | None:
    """One notification for a group's alerts that are still due; marks them notified."""
    docs, receivers, any_firing = [], (), False
    for fp in g.fingerprints:
        a = book.get(fp)
        if a is None:
            continue
        if a.state == st.RESOLVED:
            if not a.notified_ms or a.resolved_notified:
                continue
            receivers = _union(receivers, a.receivers_notified)
            a = book[fp] = replace(a, resolved_notified=True)
        elif (
            a.state == st.FIRING
            and not a.muted
            and (not a.notified_ms or now_ms >= a.notified_ms + int(a.repeat_interval_s * 1000))
        ):
            chain = config.escalation.get(a.severity, ())
            first = chain[0].receivers if chain else config.default_receivers
            receivers = _union(receivers, first)
            a = book[fp] = replace(
                a, notified_ms=now_ms, receivers_notified=_union(a.receivers_notified, first)
            )
            any_firing = True
        else:
            continue  # acknowledged or muted while the group waited
        docs.append(a.public())
    if not docs:
        return None
    status = st.FIRING if any_firing else st.RESOLVED
    return Notice(_id("group", g.key, g.flush_at_ms, *g.fingerprints), NOTIFICATION, now_ms, status, receivers,
                  g.key, tuple(docs))  # fmt: skip
