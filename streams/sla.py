"""SLA targets (a validated data file) and the SLA clocks of an incident; pure, ``now`` passed in.

Two clocks run from ``opened``: *response* stops at ``acknowledged`` (or at ``resolved`` when
the provider resolves without acknowledging), *restore* stops at ``resolved``. Each clock has a
deadline ``opened + target`` and a near-breach instant ``opened + fraction × target``. A
signal (``sla_near_breach``, ``sla_breach``) occurs at its instant unless its clock stopped at
or before it: an acknowledgement at exactly the deadline is in time, a breach is raised at
``now >= deadline``. Drills never raise signals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Mapping

import msgspec

import opscenter
from opscenter.datafile import DataFileError, Doc, from_mapping, load_yaml
from opscenter.wire_incidents import SEVERITIES
from streams.incidents import Incident

DEFAULT_TARGETS_FILE = Path(opscenter.__file__).resolve().parent / "data" / "sla_targets.yaml"

Which = Literal["response", "restore"]
Kind = Literal["sla_near_breach", "sla_breach"]
WHICH: tuple[str, ...] = ("response", "restore")
KINDS: tuple[str, ...] = ("sla_near_breach", "sla_breach")

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration_ms(text: str) -> int:
    """``"15m"``, ``"4h"``, ``"1h30m"``, ``"2.5s"``, ``"500ms"`` → milliseconds; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration: write it with a unit, e.g. '15m' or '4h'")
    s = text.strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m[1]) * _UNIT_MS[m[2]]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit ms, s, m, h or d, e.g. '15m'")
    return int(round(total))


def format_duration(ms: int) -> str:
    """Milliseconds as the shortest exact duration string (``900000`` → ``"15m"``)."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True, slots=True)
class Target:
    """Response and restore allowance of one severity, in milliseconds."""

    response_ms: int
    restore_ms: int


@dataclass(frozen=True, slots=True)
class SlaTargets:
    """Targets per severity and the near-breach fraction, with the source they came from."""

    by_severity: Mapping[str, Target]
    near_breach_fraction: float
    source: str

    def __getitem__(self, severity: str) -> Target:
        return self.by_severity[severity]

    def with_overrides(self, overrides: Mapping[str, Any] | None, source: str) -> SlaTargets:
        """These targets with an assurance period's overrides (same shape as the file, partial).

        ``source`` names the period in errors, e.g. ``"assurance period 2026-国庆"``.
        """
        if not overrides:
            return self
        return _build(from_mapping(overrides, source), base=self)


def _build(doc: Doc, base: SlaTargets | None) -> SlaTargets:
    v = doc.value
    if not isinstance(v, dict):
        raise doc.error((), "expected a mapping with 'near_breach_fraction' and 'severities'")
    unknown = set(v) - {"near_breach_fraction", "severities"}
    if unknown:
        raise doc.error((min(map(str, unknown)),), "unknown field (allowed: near_breach_fraction, severities)")
    fraction = base.near_breach_fraction if base else None
    if "near_breach_fraction" in v:
        f = v["near_breach_fraction"]
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
            raise doc.error(("near_breach_fraction",), f"{f!r} must be a number strictly between 0 and 1")
        fraction = float(f)
    elif base is None:
        raise doc.error(("near_breach_fraction",), "missing (e.g. 0.8: warn when 80 % of the allowance is used)")
    sev = v.get("severities", {} if base else None)
    if not isinstance(sev, dict):
        raise doc.error(("severities",), "expected a mapping P1..P4 → {response, restore}")
    out: dict[str, Target] = dict(base.by_severity) if base else {}
    for name, entry in sev.items():
        path = ("severities", name)
        if name not in SEVERITIES:
            raise doc.error(path, f"unknown severity {name!r} (allowed: {', '.join(SEVERITIES)})")
        if not isinstance(entry, dict) or set(entry) - {"response", "restore"}:
            raise doc.error(path, "expected {response: <duration>, restore: <duration>}")
        old = out.get(name)
        values: dict[str, int] = {}
        for key in ("response", "restore"):
            if key not in entry:
                if old is None:
                    raise doc.error(path + (key,), "missing")
                values[key] = getattr(old, f"{key}_ms")
                continue
            try:
                values[key] = parse_duration_ms(entry[key])
            except ValueError as exc:
                raise doc.error(path + (key,), str(exc)) from None
            if values[key] <= 0:
                raise doc.error(path + (key,), "must be longer than zero")
        if values["response"] > values["restore"]:
            raise doc.error(path, "response target is longer than the restore target")
        out[name] = Target(values["response"], values["restore"])
    missing = [s for s in SEVERITIES if s not in out]
    if missing:
        raise doc.error(("severities",), f"missing severities {missing}")
    assert fraction is not None
    return SlaTargets(MappingProxyType(out), fraction, doc.source if base is None else f"{base.source} + {doc.source}")


def load_targets(path: str | Path = DEFAULT_TARGETS_FILE) -> SlaTargets:
    """Read and validate an SLA targets file; :class:`DataFileError` names file, line and field."""
    try:
        doc = load_yaml(path)
    except OSError as exc:
        raise DataFileError(str(path), None, "", f"cannot read: {exc}") from exc
    return _build(doc, None)


# -- the clocks ------------------------------------------------------------------------


def with_targets(incident: Incident, targets: SlaTargets) -> Incident:
    """The incident with the targets of its (current) severity fixed on it."""
    t = targets[incident.severity]
    return msgspec.structs.replace(
        incident, response_target_ms=t.response_ms, restore_target_ms=t.restore_ms,
        near_fraction=targets.near_breach_fraction,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Deadline:
    """One clock of one incident: its deadline, near-breach instant and when it stopped."""

    which: str
    target_ms: int
    due_ms: int
    near_ms: int
    stopped_ms: int | None  # acknowledgement / resolution time; None: still running

    def status(self, now_ms: int) -> str:
        """``met``, ``met_late``, ``breached``, ``near_breach`` or ``running`` at ``now_ms``."""
        if self.stopped_ms is not None and self.stopped_ms <= now_ms:
            return "met" if self.stopped_ms <= self.due_ms else "met_late"
        if now_ms >= self.due_ms:
            return "breached"
        return "near_breach" if now_ms >= self.near_ms else "running"

    def instant(self, kind: str) -> int:
        return self.due_ms if kind == "sla_breach" else self.near_ms


def deadlines(incident: Incident) -> tuple[Deadline, ...]:
    """The response and restore clocks; empty when no targets were assigned."""
    if incident.response_target_ms <= 0 or incident.restore_target_ms <= 0:
        return ()
    out = []
    stops = (
        incident.acknowledged_ms if incident.acknowledged_ms is not None else incident.resolved_ms,
        incident.resolved_ms,
    )
    for which, target_ms, stopped in zip(WHICH, (incident.response_target_ms, incident.restore_target_ms), stops):
        due = incident.opened_ms + target_ms
        near = incident.opened_ms + int(round(target_ms * incident.near_fraction))
        out.append(Deadline(which, target_ms, due, near, stopped))
    return tuple(out)


@dataclass(frozen=True, slots=True, order=True)
class Signal:
    """A near-breach or breach of one clock of one incident, at ``at_ms``."""

    at_ms: int
    incident_id: str
    which: str
    kind: str

    @property
    def event_id(self) -> str:
        """Stable: a re-fire after a crash carries the same id."""
        return f"sla:{self.incident_id}:{self.which}:{self.kind}:{self.at_ms}"


def signals(incident: Incident) -> list[Signal]:
    """Every signal that has occurred or will occur if nothing more happens (none for drills)."""
    if incident.drill:
        return []
    out = []
    for d in deadlines(incident):
        for kind in KINDS:
            at = d.instant(kind)
            if d.stopped_ms is None or d.stopped_ms > at:
                out.append(Signal(at, incident.incident_id, d.which, kind))
    return sorted(out)


def passed(incident: Incident, now_ms: int) -> list[Signal]:
    """The signals whose instant has come by ``now_ms``."""
    return [s for s in signals(incident) if s.at_ms <= now_ms]


def still_due(incident: Incident | None, which: str, kind: str, at_ms: int, now_ms: int) -> bool:
    """Whether a scheduled signal should fire now: the incident still warrants it at that instant."""
    if incident is None or at_ms > now_ms:
        return False
    return Signal(at_ms, incident.incident_id, which, kind) in signals(incident)


def retarget(incident: Incident, targets: SlaTargets, previous: Incident | None) -> Incident:
    """Fix targets when the incident opens or its severity changes; otherwise keep them."""
    if previous is None or previous.severity != incident.severity or incident.response_target_ms <= 0:
        return with_targets(incident, targets)
    return incident


def describe(targets: SlaTargets) -> dict[str, Any]:
    """The targets as plain data (for the API and docs)."""
    return {
        "near_breach_fraction": targets.near_breach_fraction,
        "severities": {s: {"response": format_duration(t.response_ms), "restore": format_duration(t.restore_ms)}
                       for s, t in targets.by_severity.items()},
        "source": targets.source,
    }  # fmt: skip

