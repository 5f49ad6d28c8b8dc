"""A live CPU alert names the resource by its registered name, as the band and silence alerts do."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.agent import live_observations
from alerts.config import load_config
from alerts.engine import EngineState, observe_many, tick
from opscenter import demo
from opscenter.inventory import Registry


def test_a_live_cpu_alert_reads_the_resources_name_and_falls_back_to_its_id() -> None:
    city = demo.city(20)
    registry = Registry()
    for ev in demo.lifecycle_events(city, datetime.now(UTC)):
        registry.apply(ev)
    named = next(r for r in registry.all() if r.name)
    config = load_config()
    t0 = 1_767_225_600_000
    rows = [[named.resource_id, 97.0, 10.0, 10.0, t0], ["r-unregistered", 97.0, 10.0, 10.0, t0]]
    state, _ = observe_many(EngineState(), live_observations({"resources": rows}, registry), t0, config)
    state, _ = tick(state, t0 + 301_000, config)  # held for the rule's 300 s
    fired = {a.labels["resource"]: a for a in state.alerts.values() if a.rule == "cpu_high_live"}
    assert fired[named.resource_id].summary_zh == f"资源 {named.name} CPU 97.0% 超过 90% 已持续 300 秒"
    assert fired[named.resource_id].summary_en.startswith(f"Resource {named.name} CPU 97.0% above 90%")
    assert fired["r-unregistered"].summary_zh.startswith("资源 r-unregistered CPU")
