"""A batch of observations decides what the same observations one by one decide, and leaves the
state it was given as it was (the batch works on one copy of the state, changed in place).

Notifications may differ by design: a batch mutes, groups and notifies once (an alert that fired
and resolved inside the batch joins no pending group), so they are not compared here.
"""

from __future__ import annotations

import random

import pytest

from alerts import engine, persist
from alerts.config import load_config
from alerts.engine import EngineState, observe, observe_many, tick
from alerts.model import Observation

T0 = 1_767_225_600_000
STEP_MS = 20_000


def _events(rng: random.Random, step: int) -> list[Observation]:
    """Band changes and live samples of 40 resources of 4 providers: alerts open, update, resolve."""
    out = []
    for _ in range(rng.randint(1, 60)):
        i = rng.randrange(40)
        labels = {"provider": f"p{i % 4}", "unit": f"u{i % 7}", "district": "d1", "resource": f"r{i:02d}"}
        if rng.random() < 0.7:
            to = rng.choice(["low", "low", "high", "normal", "normal"])
            data = {"metric": rng.choice(["cpu", "memory"]), "window": "7d", "from": "normal", "to": to,
                    "value": round(rng.uniform(0, 100), 1)}  # fmt: skip
            out.append(Observation("band_change", T0 + step * STEP_MS, labels, data, f"e{step}-{len(out)}"))
        else:
            out.append(Observation("metric", T0 + step * STEP_MS, {**labels, "subject": labels["resource"]},
                                   {"cpu_pct": rng.choice([12.0, 50.0, 93.0, 99.0])}))  # fmt: skip
    return out


def _snapshot(state: EngineState) -> dict[str, dict[str, bytes]]:
    return {name: {k: persist.encode(v) for k, v in getattr(state, name).items()} for name in persist.SECTIONS}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_batch_decides_as_one_by_one_and_changes_nothing_it_was_given(seed: int) -> None:
    config = load_config()
    rng = random.Random(seed)
    single, batched = EngineState(), EngineState()
    for step in range(40):  # 13 minutes: groups wait and notify, repeats and escalations come due
        now = T0 + step * STEP_MS
        events = _events(rng, step)
        one_tr = []
        for obs in events:
            single, out = observe(single, obs, now, config)
            one_tr += out.transitions
        before = _snapshot(batched)
        given = batched
        batched, out = observe_many(batched, events, now, config)
        assert _snapshot(given) == before  # the input state is untouched
        assert [(t.fingerprint, t.from_state, t.to_state, t.reason) for t in out.transitions] == [
            (t.fingerprint, t.from_state, t.to_state, t.reason) for t in one_tr
        ]
        assert batched.rules == single.rules
        assert {k: (a.state, a.severity, a.values) for k, a in batched.alerts.items()} == {
            k: (a.state, a.severity, a.values) for k, a in single.alerts.items()
        }
        single, _ = tick(single, now + STEP_MS // 2, config)
        batched, _ = tick(batched, now + STEP_MS // 2, config)
    opened = [a for a in batched.alerts.values() if a.open]
    assert opened and any(a.notified_ms for a in opened)  # the run did fire and notify
    assert any(a.state == "resolved" for a in batched.alerts.values())


def test_the_match_labels_of_an_alert_are_its_labels_severity_and_rule() -> None:
    config = load_config()
    obs = Observation("band_change", T0, {"provider": "p1", "resource": "r1", "unit": "u1", "district": "d1"},
                      {"metric": "cpu", "window": "7d", "from": "normal", "to": "low", "value": 3.0}, "e1")  # fmt: skip
    state, _ = engine.observe(EngineState(), obs, T0, config)
    (a,) = state.alerts.values()
    assert a.match_labels == {**a.labels, "severity": a.severity, "alertname": a.rule}
    assert a.match_labels is a.match_labels  # computed once per alert object
