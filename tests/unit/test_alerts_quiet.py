"""Live metric samples that cannot matter are skipped by the engine: the result is exactly the same."""

from __future__ import annotations

import random

import pytest

from alerts import engine
from alerts.config import DEFAULT_PATH, load_config, parse_config
from alerts.engine import EngineState, observe_many, quiet_metric_test
from alerts.model import Observation

T0 = 1_767_225_600_000


def _samples(rng: random.Random, step: int, level: dict[int, float]) -> list[Observation]:
    out = []
    for i in range(30):
        if i % 3 == 0 and (i not in level or rng.random() < 0.15):  # a level held for minutes, now and then changed
            level[i] = rng.choice([10.0, 50.0, 79.0, 85.0, 91.0, 99.0])
        cpu = level[i] if i % 3 == 0 else rng.uniform(0, 75)
        out.append(Observation("metric", T0 + step * 30_000, {"resource": f"r{i}", "subject": f"r{i}",
                                                               "provider": "p"}, {"cpu_pct": cpu}))  # fmt: skip
    return out


def _run(config, monkeypatch: pytest.MonkeyPatch | None, seed: int) -> list:
    if monkeypatch is not None:
        monkeypatch.setattr(engine, "quiet_metric_test", lambda state, config: None)
    rng = random.Random(seed)
    state, trail, level = EngineState(), [], {}
    for step in range(60):  # 30 minutes, a batch every 30 s: holds start, fire, break and recover
        state, out = observe_many(state, _samples(rng, step, level), T0 + step * 30_000, config)
        trail.append((sorted((t.fingerprint, t.to_state) for t in out.transitions), sorted(out.wakes)))
    return [state.rules, {k: (a.state, a.started_ms, a.resolved_ms) for k, a in state.alerts.items()}, trail]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_skipping_quiet_samples_changes_nothing(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(DEFAULT_PATH)
    fast = _run(config, None, seed)
    assert fast[1], "the scenario fires alerts (else it proves nothing)"
    assert fast == _run(config, monkeypatch, seed)


def test_skip_applies_only_to_quiet_samples_of_resources_without_an_entry() -> None:
    config = load_config(DEFAULT_PATH)
    state, _ = observe_many(EngineState(), [
        Observation("metric", T0, {"resource": "hot", "subject": "hot"}, {"cpu_pct": 95.0}),
        Observation("metric", T0, {"resource": "calm", "subject": "calm"}, {"cpu_pct": 20.0}),
    ], T0, config)  # fmt: skip
    quiet = quiet_metric_test(state, config)
    assert quiet is not None
    assert not quiet(Observation("metric", T0, {"resource": "hot"}, {"cpu_pct": 10.0})), "its hold must break"
    assert quiet(Observation("metric", T0, {"resource": "calm"}, {"cpu_pct": 20.0}))
    assert not quiet(Observation("band_change", T0, {"resource": "calm"}, {}))
    quiet = quiet_metric_test(state, config)
    assert quiet is not None
    assert not quiet(Observation("metric", T0, {"resource": "calm"}, {"cpu_pct": 95.0})), "it starts a hold"
    assert not quiet(Observation("metric", T0, {"resource": "calm"}, {"cpu_pct": 20.0})), "later in the batch: it breaks it"


def test_a_hold_started_and_broken_inside_one_batch_leaves_nothing_pending() -> None:
    config = load_config(DEFAULT_PATH)
    state, out = observe_many(EngineState(), [
        Observation("metric", T0, {"resource": "r1", "subject": "r1"}, {"cpu_pct": 95.0}),
        Observation("metric", T0 + 1000, {"resource": "r1", "subject": "r1"}, {"cpu_pct": 20.0}),
    ], T0 + 1000, config)  # fmt: skip
    assert not state.rules and not out.transitions  # as if the two samples came one by one
    state, out = engine.tick(state, T0 + 3_600_000, config)
    assert not state.alerts  # no hold left to fire an hour later


def test_no_skipping_when_a_rule_is_not_per_resource_or_not_a_threshold() -> None:
    per_provider = parse_config("""
receivers: {oncall: {}}
rules:
  - {name: hot, type: threshold, kind: metric, field: data.cpu_pct, op: ">", value: 90, recover: 80,
     labels: [provider], summary: {zh: "热 {value}", en: "hot {value}"}}
""", "rules.yaml")  # fmt: skip
    state, _ = observe_many(EngineState(), [
        Observation("metric", T0, {"resource": "a", "provider": "p"}, {"cpu_pct": 95.0}),
        Observation("metric", T0, {"resource": "b", "provider": "p"}, {"cpu_pct": 10.0}),
    ], T0, per_provider)  # fmt: skip
    assert quiet_metric_test(state, per_provider) is None  # an entry per provider: every sample of it matters
    silent = parse_config("""
receivers: {oncall: {}}
rules:
  - {name: silent, type: nodata, kind: metric, after_s: 300, summary: {zh: "无数据", en: "no data"}}
""", "rules.yaml")  # fmt: skip
    assert quiet_metric_test(EngineState(), silent) is None  # every sample resets a nodata timer


@pytest.mark.parametrize("seed", [4, 5])
def test_live_rows_filtered_before_observations_give_the_same_result(seed: int) -> None:
    """The live follower drops quiet rows before building observations: same state, same transitions."""
    from types import SimpleNamespace

    from alerts.agent import _observe_live, live_observations

    config = load_config(DEFAULT_PATH)
    svc = SimpleNamespace(config=config)
    rng, level = random.Random(seed), {}
    fast, full = EngineState(), EngineState()
    fired = 0
    for step in range(60):
        rows = [[o.labels["resource"], o.data["cpu_pct"], 10.0, 10.0, o.ts_ms] for o in _samples(rng, step, level)]
        now = T0 + step * 30_000
        fast, out_fast = _observe_live(rows, None, svc, fast, now)  # type: ignore[arg-type]
        full, out_full = observe_many(full, live_observations({"resources": rows}, None), now, config)
        assert [(t.fingerprint, t.to_state) for t in out_fast.transitions] == \
            [(t.fingerprint, t.to_state) for t in out_full.transitions]  # fmt: skip
        fired += len(out_full.transitions)
    assert fired and fast.rules == full.rules
