"""Alert behaviour as timelines replayed against the pure engine with a controlled clock."""

from __future__ import annotations

from typing import Any

import pytest

from alerts import engine
from alerts.assurance import AssurancePeriod
from alerts.config import Config, parse_config
from alerts.engine import EngineState, Notice
from alerts.model import Matcher, Observation
from alerts.silences import Silence

T0_MS = 1_780_000_000_000  # a fixed instant; every test runs on its own clock


class Timeline:
    """Feeds observations and ticks at controlled times; records every notice and transition."""

    def __init__(self, config: Config | str, t0_ms: int = T0_MS) -> None:
        self.config = parse_config(config) if isinstance(config, str) else config
        self.t0_ms = t0_ms
        self.now_ms = t0_ms
        self.state = EngineState()
        self.notices: list[tuple[float, Notice]] = []
        self.transitions: list[Any] = []
        self.wakes: set[int] = set()

    def _take(self, res: tuple[EngineState, engine.Output]) -> None:
        self.state, out = res
        self.notices += [(self.at_s, n) for n in out.notices]
        self.transitions += out.transitions
        self.wakes |= out.wakes

    @property
    def at_s(self) -> float:
        """Seconds since the start of the timeline."""
        return (self.now_ms - self.t0_ms) / 1000

    def at(self, t_s: float) -> Timeline:
        """Move the clock to ``t_s`` seconds, firing every wake-up due on the way (like the timer)."""
        target = self.t0_ms + int(t_s * 1000)
        while True:
            due = sorted(w for w in self.wakes if w <= target)
            if not due:
                break
            self.wakes -= {w for w in self.wakes if w <= due[0]}
            self.now_ms = max(self.now_ms, due[0])
            self._take(engine.tick(self.state, self.now_ms, self.config))
        self.now_ms = max(self.now_ms, target)
        return self

    def event(self, kind: str, *, ts_s: float | None = None, data: dict[str, Any] | None = None,
              **labels: str) -> Timeline:  # fmt: skip
        """Feed one observation at the current time (event time ``ts_s`` if given)."""
        ts = self.now_ms if ts_s is None else self.t0_ms + int(ts_s * 1000)
        obs = Observation(kind, ts, labels, data or {}, event_id=f"e{len(self.transitions)}-{ts}")
        self._take(engine.observe(self.state, obs, self.now_ms, self.config))
        return self

    def do(self, fn: Any, *args: Any) -> Timeline:
        """Apply an engine operation (acknowledge, resolve, put_silence, …) at the current time."""
        self._take(fn(self.state, *args, self.now_ms, self.config))
        return self

    def sent(self, type_: str = "notification") -> list[tuple[float, Notice]]:
        """Notices of one type with the time (s) they went out."""
        return [(t, n) for t, n in self.notices if n.type == type_]

    def alert(self, rule: str) -> Any:
        """The one alert of ``rule`` in the state."""
        found = [a for a in self.state.alerts.values() if a.rule == rule]
        assert len(found) == 1, found
        return found[0]


CONFIG = """
defaults: {repeat_interval_s: 600, group_wait_s: 2, group_by: [provider], resolved_retention_s: 60}
receivers: {oncall: {}, lead: {}, boss: {}}
escalation:
  P1: [{after_s: 0, receivers: [oncall]}, {after_s: 120, receivers: [lead]}, {after_s: 300, receivers: [boss]}]
  P2: [{after_s: 0, receivers: [oncall]}, {after_s: 600, receivers: [lead]}]
  P3: [{after_s: 0, receivers: [oncall]}]
inhibit:
  - {source: ['alertname="provider_outage"'], target: ['resource=~".+"'], equal: [provider]}
rules:
  - name: cpu_high
    type: threshold
    kind: metric
    field: data.cpu_pct
    op: ">"
    value: 90
    for_s: 60
    recover: {op: "<", value: 80}
    assurance: {value: 70, recover: {value: 60}, for_s: 0}
    labels: [provider, resource]
    severity: P3
    summary: {zh: "CPU {value}", en: "CPU {value}"}
  - name: band_high
    type: event
    kind: band_change
    where: {data.band: high}
    resolve_on: {kind: band_change, where: {data.band: {ne: high}}}
    labels: [provider, resource]
    severity: P2
    summary: {zh: "资源 {resource} 偏高", en: "{resource} high"}
  - name: incident
    type: event
    kind: incident_opened
    where: {severity: [P1, P2]}
    resolve_on: {kind: incident_resolved}
    labels: [provider, subject]
    severity: {from_event: true, default: P2}
    summary: {zh: "事件 {subject}", en: "incident {subject}"}
  - name: provider_outage
    type: event
    kind: provider_outage
    resolve_on: {kind: provider_recovered}
    labels: [provider]
    severity: P1
    summary: {zh: "{provider} 故障", en: "{provider} outage"}
  - name: nodata
    type: nodata
    kind: metric
    after_s: 180
    labels: [provider, resource]
    severity: P3
    summary: {zh: "无数据", en: "no data"}
"""


def cpu(t: Timeline, value: float, resource: str = "r1", provider: str = "p1") -> Timeline:
    return t.event("metric", data={"cpu_pct": value}, provider=provider, resource=resource)


def band(t: Timeline, level: str, resource: str = "r1", provider: str = "p1") -> Timeline:
    return t.event("band_change", data={"band": level}, provider=provider, resource=resource)


def statuses(t: Timeline, type_: str = "notification") -> list[tuple[float, str, list[str]]]:
    return [(at, n.status, [a["labels"].get("resource", a["labels"].get("subject", "")) for a in n.alerts])
            for at, n in t.sent(type_)]  # fmt: skip


def test_hold_duration_fires_only_after_for_s_without_new_samples() -> None:
    t = Timeline(CONFIG)
    cpu(t, 95)
    t.at(59)
    assert t.sent() == [] and t.state.alerts == {}
    t.at(60)  # the hold ends on a timer, no new sample needed
    assert t.alert("cpu_high").state == "firing"
    t.at(62)  # + group_wait
    assert statuses(t) == [(62.0, "firing", ["r1"])]


def test_one_good_sample_breaks_the_hold() -> None:
    t = Timeline(CONFIG)
    cpu(t, 95).at(30)
    cpu(t, 85).at(40)  # not above 90: the hold starts over
    cpu(t, 95).at(99)
    assert t.state.alerts == {}
    t.at(100)
    assert t.alert("cpu_high").started_ms == T0_MS + 100_000


def test_hysteresis_between_fire_and_recover_thresholds() -> None:
    t = Timeline(CONFIG)
    cpu(t, 95).at(60)
    assert t.alert("cpu_high").state == "firing"
    for v in (85, 89, 81, 95, 80):  # between 80 and 90: still firing, no new notification
        t.at(t.at_s + 30)
        cpu(t, v)
    assert t.alert("cpu_high").state == "firing"
    assert len(t.sent()) == 1
    t.at(t.at_s + 30)
    cpu(t, 79.9)
    assert t.alert("cpu_high").state == "resolved"
    t.at(t.at_s + 2)
    assert [s for _, s, _ in statuses(t)] == ["firing", "resolved"]


def test_dedup_over_the_repeat_interval() -> None:
    t = Timeline(CONFIG)
    band(t, "high")
    for s in range(10, 600, 10):  # the producer repeats itself: no new page
        t.at(s)
        band(t, "high")
    assert [at for at, _, _ in statuses(t)] == [2.0]
    t.at(603)  # repeat_interval after the first notification, then its group's wait
    assert [at for at, _, _ in statuses(t)] == [2.0]
    t.at(604)
    assert [at for at, _, _ in statuses(t)] == [2.0, 604.0]
    t.at(1000)
    assert len(statuses(t)) == 2


def test_grouping_of_one_providers_alerts_within_group_wait() -> None:
    t = Timeline(CONFIG)
    band(t, "high", "r1")
    t.at(1)
    band(t, "high", "r2")
    band(t, "high", "r9", provider="p2")  # another provider: its own group
    t.at(1.5)
    band(t, "high", "r3")
    t.at(10)
    got = sorted((at, res) for at, _, res in statuses(t))
    assert got == [(2.0, ["r1", "r2", "r3"]), (3.0, ["r9"])]
    # a later alert of the same provider starts a new group
    band(t, "high", "r4")
    t.at(20)
    assert statuses(t)[-1] == (12.0, "firing", ["r4"])


def test_inhibition_provider_outage_mutes_resource_symptoms() -> None:
    t = Timeline(CONFIG)
    t.event("provider_outage", provider="p1")
    band(t, "high", "r1")
    band(t, "high", "r5", provider="p2")  # other provider: not muted
    t.at(5)
    notified = sorted(r for _, _, rs in statuses(t) for r in rs)
    assert notified == ["", "r5"]  # the outage itself (no resource label) and p2's symptom
    r1 = next(a for a in t.state.alerts.values() if a.labels.get("resource") == "r1")
    assert r1.state == "firing" and r1.inhibited_by  # kept and visible, just muted
    t.event("provider_recovered", provider="p1")
    t.at(10)  # outage over, symptom still there: now it is notified (after group_wait)
    last = statuses(t)[-1]
    assert last[0] == 7.0 and set(last[2]) == {"", "r1"}  # resolved outage + firing r1, one notice
    assert not t.state.alerts[r1.fingerprint].inhibited_by


def test_silence_start_and_expiry() -> None:
    t = Timeline(CONFIG)
    sil = Silence(
        "s1",
        (Matcher.parse('resource="r1"'),),
        T0_MS + 10_000,
        T0_MS + 100_000,
        "duty",
        "maintenance",
        T0_MS,
    )
    t.do(engine.put_silence, sil)
    band(t, "high", "r1").at(5)
    assert statuses(t) == [(2.0, "firing", ["r1"])]  # silence not started yet
    t.at(20)
    band(t, "high", "r2")
    t.at(30)
    band(t, "low", "r1").at(31)  # resolved while silenced: the page was sent, so is the all-clear
    t.at(40)
    band(t, "high", "r1").at(50)  # fires again inside the silence: no page
    assert [r for _, _, r in statuses(t)] == [["r1"], ["r2"], ["r1"]]
    assert [s for _, s, _ in statuses(t)] == ["firing", "firing", "resolved"]
    r1 = next(a for a in t.state.alerts.values() if a.labels["resource"] == "r1")
    assert (r1.state, r1.silenced_by, r1.notified_ms) == ("firing", ("s1",), 0)
    t.at(100)  # silence expires: the still-firing alert is notified at once (then group_wait)
    t.at(103)
    assert statuses(t)[-1] == (102.0, "firing", ["r1"])
    assert [n.extra["silence"]["state"] for _, n in t.sent("silence")] == ["pending"]


def test_silence_expired_through_the_api_releases_at_once() -> None:
    t = Timeline(CONFIG)
    sil = Silence(
        "s1", (Matcher.parse('provider="p1"'),), T0_MS, T0_MS + 3_600_000, "duty", "upgrade", T0_MS
    )
    t.do(engine.put_silence, sil)
    band(t, "high", "r1").at(60)
    assert statuses(t) == []
    t.do(engine.expire_silence, "s1").at(63)
    assert statuses(t) == [(62.0, "firing", ["r1"])]


def test_acknowledge_stops_escalation_keeps_alert_and_clears_on_resolve() -> None:
    t = Timeline(CONFIG)
    t.event("incident_opened", provider="p1", subject="inc-1", severity="P1")
    t.at(60)
    fp = t.alert("incident").fingerprint
    t.do(engine.acknowledge, fp, "zhang", "on it")
    a = t.alert("incident")
    assert (a.state, a.ack_by) == ("acknowledged", "zhang")
    t.at(1000)  # past every escalation step and the repeat interval
    assert t.sent("escalation") == [] and len(t.sent()) == 1
    assert t.alert("incident").state == "acknowledged"  # still visible
    t.event("incident_resolved", provider="p1", subject="inc-1", severity="P1").at(1003)
    a = t.alert("incident")
    assert (a.state, a.ack_by, a.ack_ms) == ("resolved", "", 0)
    assert statuses(t)[-1][1] == "resolved"
    t.at(2000)  # retention over: the resolved alert leaves the live state
    t.event("incident_opened", provider="p1", subject="inc-1", severity="P1")
    a = t.alert("incident")
    assert (a.state, a.ack_by) == ("firing", "")  # a new instance, not acknowledged
    assert [tr.to_state for tr in t.transitions] == ["firing", "acknowledged", "resolved", "firing"]


def test_escalation_steps_fire_on_time_without_input() -> None:
    t = Timeline(CONFIG)
    t.event("incident_opened", provider="p1", subject="inc-1", severity="P1")
    t.at(1000)
    esc = [(at, n.step, n.receivers) for at, n in t.sent("escalation")]
    assert esc == [(120.0, 1, ("lead",)), (300.0, 2, ("boss",))]
    assert t.sent()[0][1].receivers == ("oncall",)


def test_manual_resolve_needs_no_event_and_rule_can_fire_again() -> None:
    t = Timeline(CONFIG)
    band(t, "high").at(5)
    t.do(engine.resolve, t.alert("band_high").alert_id, "li", "fixed by hand").at(10)
    assert t.alert("band_high").resolve_reason == "fixed by hand"
    assert statuses(t)[-1][1] == "resolved"
    band(t, "high").at(20)
    assert t.alert("band_high").state == "firing"


def test_nodata_fires_on_a_timer_and_resolves_on_data() -> None:
    t = Timeline(CONFIG)
    cpu(t, 10)
    t.at(170)
    cpu(t, 10)
    t.at(349)
    assert "nodata" not in {a.rule for a in t.state.alerts.values()}
    t.at(350)
    assert t.alert("nodata").state == "firing"
    cpu(t, 10)
    assert t.alert("nodata").state == "resolved"


def test_flap_inside_group_wait_is_not_a_second_page() -> None:
    t = Timeline(CONFIG)
    band(t, "high").at(5)
    band(t, "normal")
    band(t, "high").at(30)
    assert [s for _, s, _ in statuses(t)] == ["firing"]
    assert t.alert("band_high").state == "firing"


PERIOD = AssurancePeriod(
    "ny", "元旦保障", "New Year", T0_MS + 1_000_000, T0_MS + 2_000_000, "holiday"
)


def test_assurance_period_tightens_thresholds() -> None:
    t = Timeline(CONFIG)
    t.do(engine.put_period, PERIOD)
    cpu(t, 75).at(500)
    assert not [
        a for a in t.state.alerts.values() if a.rule == "cpu_high"
    ]  # 75 < 90 outside the period
    t.at(1000)
    cpu(t, 75)  # inside: threshold 70, hold 0 s
    assert t.alert("cpu_high").state == "firing"
    cpu(t, 65)  # recovery inside is < 60: still firing
    assert t.alert("cpu_high").state == "firing"
    cpu(t, 59)
    assert t.alert("cpu_high").state == "resolved"
    ann = [(at, n.extra["active"]) for at, n in t.sent("assurance")]
    assert ann == [(1000.0, True)]
    t.at(2000)
    assert [a for _, a in [(at, n.extra["active"]) for at, n in t.sent("assurance")]] == [
        True,
        False,
    ]


@pytest.mark.parametrize("severity, inside, expect_steps", [
    ("P1", True, [(60.0, 1), (60.0, 2)]),
    ("P1", False, [(1120.0, 1), (1300.0, 2)]),
    ("P2", True, [(60.0, 1)]),
])  # fmt: skip
def test_assurance_period_escalates_p1_p2_at_once(
    severity: str, inside: bool, expect_steps: list
) -> None:
    t = Timeline(CONFIG)
    if inside:
        t.do(engine.put_period, AssurancePeriod("x", "会议", "Meeting", T0_MS, T0_MS + 10_000_000))
    else:
        t.at(1000)
    t.event("incident_opened", provider="p1", subject="inc-9", severity=severity)
    t.at(t.at_s + 58)
    t.at(t.at_s + 2000 if not inside else t.at_s + 2)
    got = [(at, n.step) for at, n in t.sent("escalation")]
    if inside:
        assert [s for _, s in got] == [s for _, s in expect_steps]
        assert all(at <= t.at_s and at == got[0][0] for at, _ in got)
        assert got[0][0] == 2.0  # right after the first notification (group_wait)
    else:
        assert got == expect_steps


def test_severity_from_event_and_where_filters() -> None:
    t = Timeline(CONFIG)
    t.event("incident_opened", provider="p1", subject="inc-3", severity="P3")  # not P1/P2
    assert t.state.alerts == {}
    t.event("incident_opened", provider="p1", subject="inc-4", severity="P2")
    assert t.alert("incident").severity == "P2"
