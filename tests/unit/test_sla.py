"""SLA targets file and SLA clocks, replayed as timelines against a clock the test controls."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from opscenter.datafile import DataFileError
from opscenter.wire_incidents import IncidentEvent
from streams import sla
from streams.incidents import Applied, Incident, apply

T0 = datetime(2026, 10, 1, 2, 0, tzinfo=timezone.utc)
T0_MS = int(T0.timestamp() * 1000)
MIN, HOUR = 60_000, 3_600_000
TARGETS = sla.load_targets()


def ev(type_: str, at_ms: int, **kw: object) -> IncidentEvent:
    ts = T0 + timedelta(milliseconds=at_ms)
    return IncidentEvent(f"e-{type_}-{at_ms}", "i1", type_, ts, "p1", **kw)  # type: ignore[arg-type]


class Timeline:
    """Feeds events and asks the pure clock which signals have fired, at instants we choose."""

    def __init__(self, severity: str = "P1", drill: bool = False, targets: sla.SlaTargets = TARGETS) -> None:
        self.targets = targets
        self.incident: Incident | None = None
        self.step(ev("opened", 0, severity=severity, drill=drill))

    def step(self, e: IncidentEvent) -> None:
        out = apply(self.incident, e, T0_MS + 10 * 24 * HOUR)
        assert isinstance(out, Applied), out
        self.incident = sla.retarget(out.incident, self.targets, out.previous)

    def fired(self, at_ms: int) -> list[tuple[str, str]]:
        assert self.incident is not None
        return [(s.which, s.kind) for s in sla.passed(self.incident, T0_MS + at_ms)]


# -- the data file ---------------------------------------------------------------------------


def test_default_targets_are_the_requirements() -> None:
    expected = {"P1": (15 * MIN, 4 * HOUR), "P2": (30 * MIN, 8 * HOUR), "P3": (2 * HOUR, 24 * HOUR),
                "P4": (8 * HOUR, 72 * HOUR)}  # fmt: skip
    assert {s: (t.response_ms, t.restore_ms) for s, t in TARGETS.by_severity.items()} == expected
    assert TARGETS.near_breach_fraction == 0.8


@pytest.mark.parametrize(
    "text, line, field",
    [
        ("near_breach_fraction: 0.8\nseverities:\n  P1: {response: 15m, restore: 4h}\n", 2, "severities"),
        ("near_breach_fraction: 1.5\nseverities: {}\n", 1, "near_breach_fraction"),
        ("near_breach_fraction: 0.8\nseverities:\n  P1: {response: 15 min, restore: 4h}\n", 3,
         "severities.P1.response"),
        ("near_breach_fraction: 0.8\nseverities:\n  P7: {response: 1m, restore: 4h}\n", 3, "severities.P7"),
        ("near_breach_fraction: 0.8\nseverities:\n  P1:\n    response: 5h\n    restore: 4h\n", 3, "severities.P1"),
        ("near_breach_fraction: 0.8\nseverities:\n  P1:\n    response: 0s\n    restore: 4h\n", 4,
         "severities.P1.response"),
        ("near_breach_fraction: 0.8\ntargets: {}\n", 2, "targets"),
        ("severities: [\n", 2, ""),
    ],
)  # fmt: skip
def test_bad_target_files_name_file_line_and_field(tmp_path: Path, text: str, line: int, field: str) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFileError) as info:
        sla.load_targets(path)
    err = info.value
    assert (err.source, err.line, err.field) == (str(path), line, field), str(err)
    assert str(err).startswith(f"{path}:{line}: ")


def test_assurance_period_overrides_tighten_some_targets() -> None:
    tight = TARGETS.with_overrides({"near_breach_fraction": 0.5, "severities": {"P1": {"response": "5m"}}},
                                   "assurance period 国庆")  # fmt: skip
    assert (tight["P1"].response_ms, tight["P1"].restore_ms, tight.near_breach_fraction) == (5 * MIN, 4 * HOUR, 0.5)
    assert tight["P2"] == TARGETS["P2"] and "国庆" in tight.source
    assert TARGETS.with_overrides(None, "none") is TARGETS
    with pytest.raises(DataFileError, match=r"assurance period X: severities\.P2\.restore"):
        TARGETS.with_overrides({"severities": {"P2": {"restore": "soon"}}}, "assurance period X")


@pytest.mark.parametrize("text, ms", [("15m", 900_000), ("4h", 14_400_000), ("1h30m", 5_400_000),
                                      ("2.5s", 2500), ("500ms", 500), ("3d", 259_200_000)])  # fmt: skip
def test_durations(text: str, ms: int) -> None:
    assert sla.parse_duration_ms(text) == ms


# -- timelines --------------------------------------------------------------------------------


def test_p1_never_acknowledged_breaches_at_exactly_15_minutes() -> None:
    t = Timeline("P1")
    assert t.fired(12 * MIN - 1) == []
    assert t.fired(12 * MIN) == [("response", "sla_near_breach")]  # 80 % of 15 min
    assert t.fired(15 * MIN - 1) == [("response", "sla_near_breach")]
    assert t.fired(15 * MIN) == [("response", "sla_near_breach"), ("response", "sla_breach")]
    (response, restore) = sla.deadlines(t.incident)  # type: ignore[arg-type]
    assert (response.status(15 * MIN - 1 + T0_MS), response.status(15 * MIN + T0_MS)) == ("near_breach", "breached")


def test_p1_acknowledged_at_14_minutes_does_not_breach_response() -> None:
    t = Timeline("P1")
    t.step(ev("acknowledged", 14 * MIN))
    assert t.fired(4 * HOUR - 1) == [("response", "sla_near_breach"), ("restore", "sla_near_breach")]
    response = sla.deadlines(t.incident)[0]  # type: ignore[arg-type]
    assert response.status(T0_MS + 5 * HOUR) == "met"


def test_acknowledged_before_the_near_instant_raises_nothing_for_response() -> None:
    t = Timeline("P1")
    t.step(ev("acknowledged", 11 * MIN))
    assert [w for w, _ in t.fired(10 * HOUR)] == ["restore", "restore"]


def test_acknowledged_exactly_at_the_deadline_is_in_time() -> None:
    t = Timeline("P1")
    t.step(ev("acknowledged", 15 * MIN))
    assert ("response", "sla_breach") not in t.fired(10 * HOUR)
    assert sla.deadlines(t.incident)[0].status(T0_MS + 15 * MIN) == "met"  # type: ignore[arg-type]


def test_restore_breaches_at_4_hours_and_near_breach_at_80_percent() -> None:
    t = Timeline("P1")
    t.step(ev("acknowledged", 5 * MIN))
    assert t.fired(int(3.2 * HOUR) - 1) == []
    assert t.fired(int(3.2 * HOUR)) == [("restore", "sla_near_breach")]
    assert t.fired(4 * HOUR - 1) == [("restore", "sla_near_breach")]
    assert t.fired(4 * HOUR) == [("restore", "sla_near_breach"), ("restore", "sla_breach")]


def test_resolved_in_time_stops_both_clocks() -> None:
    t = Timeline("P2")
    t.step(ev("resolved", 10 * MIN))  # resolved without an acknowledgement: answers the response too
    assert t.fired(100 * HOUR) == []
    assert [d.status(T0_MS + 100 * HOUR) for d in sla.deadlines(t.incident)] == ["met", "met"]  # type: ignore[arg-type]


def test_resolved_late_keeps_the_breach_and_reports_met_late() -> None:
    t = Timeline("P1")
    t.step(ev("acknowledged", 10 * MIN))
    t.step(ev("resolved", 5 * HOUR))
    assert t.fired(6 * HOUR)[-1] == ("restore", "sla_breach")
    assert sla.deadlines(t.incident)[1].status(T0_MS + 6 * HOUR) == "met_late"  # type: ignore[arg-type]


@pytest.mark.parametrize("severity, response_min, restore_h", [("P2", 30, 8), ("P3", 120, 24), ("P4", 480, 72)])
def test_each_severity_has_its_deadlines(severity: str, response_min: int, restore_h: int) -> None:
    t = Timeline(severity)
    assert t.fired(response_min * MIN - 1) == [("response", "sla_near_breach")]
    assert ("response", "sla_breach") in t.fired(response_min * MIN)
    assert ("restore", "sla_breach") not in t.fired(restore_h * HOUR - 1)
    assert ("restore", "sla_breach") in t.fired(restore_h * HOUR)


def test_a_drill_never_raises_signals() -> None:
    t = Timeline("P1", drill=True)
    assert t.fired(1000 * HOUR) == [] and sla.signals(t.incident) == []  # type: ignore[arg-type]


def test_regrading_moves_the_deadlines_but_an_unrelated_update_does_not() -> None:
    t = Timeline("P3")
    t.step(ev("updated", 1 * MIN, text="more detail"))
    assert t.incident.response_target_ms == 2 * HOUR  # type: ignore[union-attr]
    t.step(ev("updated", 20 * MIN, severity="P1"))
    assert t.fired(20 * MIN) == [("response", "sla_near_breach"), ("response", "sla_breach")]


def test_targets_are_fixed_at_opening() -> None:
    t = Timeline("P1", targets=TARGETS.with_overrides({"severities": {"P1": {"response": "5m"}}}, "重保"))
    t.targets = TARGETS  # the period ended: the incident keeps the targets it opened with
    t.step(ev("updated", 1 * MIN, text="x"))
    assert ("response", "sla_breach") in t.fired(5 * MIN)


def test_still_due_and_stable_event_ids() -> None:
    t = Timeline("P1")
    inc = t.incident
    assert inc is not None
    at = T0_MS + 15 * MIN
    assert sla.still_due(inc, "response", "sla_breach", at, at)
    assert not sla.still_due(inc, "response", "sla_breach", at, at - 1)  # not yet
    assert not sla.still_due(inc, "response", "sla_breach", at + 1, at + 1)  # a stale instant
    assert not sla.still_due(None, "response", "sla_breach", at, at)
    t.step(ev("acknowledged", 3 * MIN))
    assert not sla.still_due(t.incident, "response", "sla_breach", at, at)
    ids = [s.event_id for s in sla.signals(inc)]
    assert ids == [s.event_id for s in sla.signals(inc)] and len(set(ids)) == 4
    assert ids[0] == f"sla:i1:response:sla_near_breach:{T0_MS + 12 * MIN}"


def test_the_documented_targets_are_the_shipped_file() -> None:
    import re

    from opscenter.datafile import parse_yaml

    doc = (Path(__file__).resolve().parents[2] / "docs" / "sla.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert block is not None
    shipped = sla.DEFAULT_TARGETS_FILE.read_text(encoding="utf-8")
    assert parse_yaml(block[1], "docs").value == parse_yaml(shipped, "file").value
