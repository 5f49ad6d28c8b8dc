"""The rule file is validated at start: every problem names file, rule, field and line."""

from __future__ import annotations

from datetime import UTC

import pytest

from alerts.config import DEFAULT_PATH, load_calendar, load_config, parse_calendar, parse_config
from alerts.model import Matcher, Observation
from alerts.rules import Fire, Resolve, Wake, evaluate
from alerts.yamlfile import ConfigError

GOOD = """
receivers: {oncall: {}}
rules:
  - name: hot
    type: threshold
    field: data.temp_c
    op: ">="
    value: 40
    recover: 35
    summary: {zh: "温度 {value}", en: "temp {value}"}
"""


def problems(text: str) -> list[tuple[str, str, int]]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "rules.yaml")
    return [(p.rule, p.field, p.line) for p in exc.value.problems]


def test_shipped_rule_file_and_calendar_are_valid() -> None:
    config = load_config(DEFAULT_PATH)
    names = {r.name for r in config.rules}
    assert {"utilization_high", "sla_breach", "sla_near_breach", "incident_p1_p2", "telemetry_nodata",
            "telemetry_quality", "lifecycle_deadline", "cpu_high_live", "provider_outage"} <= names  # fmt: skip
    assert all(r.summary_zh and r.summary_en for r in config.rules)
    assert load_calendar()


def test_errors_name_file_rule_field_and_line() -> None:
    text = GOOD.replace('op: ">="', 'op: "=>"').replace("value: 40", "value: forty")
    got = problems(text)
    assert ("hot", "op", 7) in got and ("hot", "value", 8) in got
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "rules.yaml")
    assert "rules.yaml:7: rule 'hot' field 'op'" in str(exc.value)


@pytest.mark.parametrize("change, field", [
    (("type: threshold", "type: thresold"), "type"),
    (("recover: 35", "recover: 45"), "recover.value"),  # overlaps the firing condition
    (("field: data.temp_c", "field: temp_c"), "field"),
    (('{zh: "温度 {value}"', '{zh: "温度 {valu}"'), "summary.zh"),
    (("    summary:", "    colour: red\n    summary:"), "colour"),
    (("rules:", "rules:\n  - {name: x, type: event, summary: {zh: a, en: b}}"), "kind"),
    (("rules:", "defaults: {group_by: [planet]}\nrules:"), "defaults.group_by"),
    (("receivers: {oncall: {}}", "receivers: {oncall: {webhooks: [{url: ftp://x, secret: s}]}}"),
     "receivers.oncall.webhooks[0].url"),
])  # fmt: skip
def test_each_kind_of_mistake_is_reported(change: tuple[str, str], field: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    assert field in [f for _, f, _ in problems(text)]


def test_all_problems_at_once_and_duplicate_names() -> None:
    text = GOOD + GOOD.split("rules:\n", 1)[1].replace('op: ">="', 'op: "<>"')
    got = problems(text)
    assert ("hot", "name", 11) in got and ("hot", "op", 14) in got


def test_yaml_syntax_error_has_a_line() -> None:
    assert problems("rules:\n  - name: [unclosed\n")[0][2] >= 2


def test_escalation_must_start_at_zero_and_name_receivers() -> None:
    text = GOOD + "escalation:\n  P1: [{after_s: 5, receivers: [nobody]}]\n"
    got = {f for _, f, _ in problems(text)}
    assert {"escalation.P1[0].after_s", "escalation.P1[0].receivers"} <= got


def test_calendar_problems_name_the_period() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_calendar(
            "periods:\n  - {id: a, name_zh: 会议, starts_at: '2026-01-02T00:00:00', ends_at: x}\n",
            "cal.yaml",
        )
    assert {(p.rule, p.field) for p in exc.value.problems} == {("a", "starts_at"), ("a", "ends_at")}


def test_pure_evaluation_of_a_threshold_rule() -> None:
    rules = parse_config(GOOD).rules
    obs = Observation("anything", 1000, {"resource": "r1"}, {"temp_c": 41})
    state, out = evaluate({}, obs, 1000, rules)
    assert [type(d) for d in out] == [Fire] and out[0].summary_en == "temp 41"
    state, out = evaluate(
        state, Observation("x", 2000, {"resource": "r1"}, {"temp_c": 36}), 2000, rules
    )
    assert out == []  # between 35 and 40: hysteresis
    state, out = evaluate(
        state, Observation("x", 3000, {"resource": "r1"}, {"temp_c": 34}), 3000, rules
    )
    assert [type(d) for d in out] == [Resolve] and state == {}
    _, out = evaluate({}, Observation("x", 1, {}, {"temp_c": "hot"}), 1, rules)
    assert out == []  # not a number: ignored, never a crash
    assert not any(isinstance(d, Wake) for d in out)


@pytest.mark.parametrize("text, labels, hit", [
    ('resource="r1"', {"resource": "r1"}, True),
    ('resource!="r1"', {"resource": "r1"}, False),
    ('resource=~"r[0-9]+"', {"resource": "r12"}, True),
    ('resource!~"r.*"', {}, True),
    ("provider=p1", {"provider": "p1"}, True),
])  # fmt: skip
def test_matchers(text: str, labels: dict[str, str], hit: bool) -> None:
    assert Matcher.parse(text).matches(labels) is hit


def test_bad_matcher_is_refused() -> None:
    with pytest.raises(ValueError):
        Matcher.parse('resource=~"("')


def test_pure_alert_modules_import_no_io_library() -> None:
    import subprocess
    import sys

    pure = ["model", "rules", "state", "engine", "config", "silences", "inhibit", "grouping", "escalation",
            "assurance", "yamlfile"]  # fmt: skip
    code = (
        "import sys\n"
        + "".join(f"import alerts.{m}\n" for m in pure)
        + "bad = [m for m in ('faust', 'aiokafka', 'redis', 'clickhouse_connect', 'starlette', 'aiohttp', 'aiosmtplib')"
        " if m in sys.modules]\nprint(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_shipped_rules_on_the_producers_event_shapes() -> None:
    from datetime import datetime

    from alerts import engine
    from alerts.engine import EngineState
    from alerts.model import from_event
    from opscenter.wire import Event

    config = load_config(DEFAULT_PATH)
    t = datetime(2026, 3, 1, tzinfo=UTC)

    def band(metric: str, frm: str, to: str, eid: str) -> Observation:
        return from_event(Event(eid, "band_change", t, "r-1", provider_id="p1", unit_id="u1", district_id="d1",
                                resource_id="r-1", data={"metric": metric, "window": "1h", "from": frm, "to": to,
                                                         "value": 91.5}))  # fmt: skip

    def sla(kind: str, eid: str) -> Observation:
        return from_event(Event(eid, kind, t, "inc-1", provider_id="p1", severity="P1",
                                data={"incident_id": "inc-1", "deadline": "respond", "due_ms": 1}))  # fmt: skip

    state = EngineState()
    for obs in (
        band("cpu", "normal", "high", "e1"),
        band("mem", "low", "normal", "e2"),
        sla("sla_near_breach", "e3"),
    ):
        state, _ = engine.observe(state, obs, 1000, config)
    by_rule = {a.rule: a for a in state.alerts.values()}
    assert (
        by_rule["utilization_high"].state == "firing"
    )  # mem's change does not resolve cpu's alert
    assert by_rule["utilization_high"].summary_zh == "资源 r-1 利用率偏高：CPU 1 小时窗口 91.5%"
    assert by_rule["utilization_high"].summary_en == "Resource r-1 utilization high: CPU over 1 h at 91.5%"
    assert by_rule["utilization_high"].labels["metric"] == "cpu"  # silences and the API match on wire values
    assert by_rule["sla_near_breach"].state == "firing"
    state, _ = engine.observe(state, sla("sla_breach", "e4"), 2000, config)
    by_rule = {a.rule: a for a in state.alerts.values()}
    assert by_rule["sla_near_breach"].state == "resolved"  # superseded by the breach
    assert (by_rule["sla_breach"].state, by_rule["sla_breach"].severity) == ("firing", "P1")
    state, _ = engine.observe(state, band("cpu", "high", "normal", "e5"), 3000, config)
    assert {a.rule: a.state for a in state.alerts.values()}["utilization_high"] == "resolved"


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production keeps webhook secrets and the SMTP password out of the rule file."""
    text = GOOD.replace("receivers: {oncall: {}}", (
        "receivers: {oncall: {webhooks: [{url: 'https://hook.example', secret_env: OC_TEST_HOOK}]}}\n"
        "smtp: {host: mail.example, username: ops, password_env: OC_TEST_SMTP}"))  # fmt: skip
    monkeypatch.delenv("OC_TEST_HOOK", raising=False)
    monkeypatch.delenv("OC_TEST_SMTP", raising=False)
    assert {"receivers.oncall.webhooks[0].secret_env", "smtp.password_env"} <= {f for _, f, _ in problems(text)}
    monkeypatch.setenv("OC_TEST_HOOK", "hook-key")
    monkeypatch.setenv("OC_TEST_SMTP", "mail-pass")
    config = parse_config(text, "rules.yaml")
    (hook,) = config.receivers["oncall"].webhooks
    assert hook.secret == "hook-key" and config.smtp.password == "mail-pass"
    both = text.replace("secret_env: OC_TEST_HOOK", "secret: x, secret_env: OC_TEST_HOOK")
    assert "receivers.oncall.webhooks[0].secret" in {f for _, f, _ in problems(both)}


def test_summaries_name_metrics_and_windows_in_their_language() -> None:
    """A duty officer reads 内存 and 7 天 on the Chinese screens, memory and 7 days on the English ones;
    a value no table knows is shown as it came."""
    from alerts.model import render

    vals = {"metric": "memory", "window": "7d", "data.value": 9.8, "resource": "r-15"}
    tpl_zh, tpl_en = "资源 {resource} 利用率偏低：{metric} {window}窗口 {data.value}%", "{metric} over {window} at {data.value}%"
    assert render(tpl_zh, vals, "zh") == "资源 r-15 利用率偏低：内存 7 天窗口 9.8%"
    assert render(tpl_en, vals, "en") == "memory over 7 days at 9.8%"
    assert render("{data.metric}", {"data.metric": "storage"}, "zh") == "存储"
    assert render(tpl_zh, {**vals, "metric": "gpu", "window": "30d"}, "zh") == "资源 r-15 利用率偏低：gpu 30d窗口 9.8%"
    assert render(tpl_zh, vals) == "资源 r-15 利用率偏低：memory 7d窗口 9.8%"  # no language: as it came
    assert render("{resource}", {"resource": "memory"}, "zh") == "memory"  # only metric, window, deadline values
    assert render("事件 {subject} 超出 SLA {deadline}时限", {"subject": "inc-1", "deadline": "restore"}, "zh") == (
        "事件 inc-1 超出 SLA 恢复时限")


def test_a_band_alert_names_the_resource_and_falls_back_to_its_id() -> None:
    """Duty officers know systems by name: a band change of a registered resource carries its name,
    the summary shows it; an event without one shows the id (the identity stays the id either way)."""
    from dataclasses import replace
    from datetime import datetime

    from alerts import engine
    from alerts.engine import EngineState
    from alerts.model import from_event, render, template_fields
    from opscenter.inventory import Resource
    from streams.bands import Transition, band_event

    config = load_config(DEFAULT_PATH)
    t = Transition("r-15", "memory", "7d", "normal", "low", 9.8, 1_000, 0)
    res = Resource("r-15", "p1", "u1", "d1", "市民政局-社会救助-01", 4, 16, 100, "delivered", 60,
                   datetime(2026, 3, 1, tzinfo=UTC))  # fmt: skip
    named = band_event(t, res)
    assert named.data["name"] == "市民政局-社会救助-01"
    state, _ = engine.observe(EngineState(), from_event(named), 2_000, config)
    (alert,) = state.alerts.values()
    assert alert.summary_zh == "资源 市民政局-社会救助-01 利用率偏低：内存 7 天窗口 9.8%"
    assert alert.summary_en == "Resource 市民政局-社会救助-01 utilization low: memory over 7 days at 9.8%"
    assert alert.labels["resource"] == "r-15"

    unnamed = band_event(t, replace(res, name=""))
    assert "name" not in unnamed.data
    state2, _ = engine.observe(EngineState(), from_event(unnamed), 2_000, config)
    (alert2,) = state2.alerts.values()
    assert alert2.summary_zh == "资源 r-15 利用率偏低：内存 7 天窗口 9.8%"
    assert alert2.fingerprint == alert.fingerprint  # the name is not part of the identity

    assert template_fields("{data.name|resource} {value}") == ["data.name", "resource", "value"]
    assert render("{data.name|resource}", {"data.name": "", "resource": "r-1"}) == "r-1"  # empty: the next one
    assert render("{data.name|resource}", {}) == "-"
