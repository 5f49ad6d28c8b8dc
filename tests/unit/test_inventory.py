"""The lifecycle state machine of a resource (§19–§21)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from opscenter.inventory import LifecycleError, Registry
from opscenter.wire import LifecycleEvent, Spec

T = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def ev(type_: str, n: int, spec: Spec | None = None, provider: str = "p1") -> LifecycleEvent:
    return LifecycleEvent(f"e{n}", "r1", type_, T + timedelta(days=n), provider, "u1", "d1", "OA", spec)


def test_full_life() -> None:
    reg = Registry()
    reg.apply(ev("applied", 0, Spec(4, 8, 100)))
    for n, t in enumerate(["accepted", "baseline_passed", "delivered", "acceptance_passed"], 1):
        reg.apply(ev(t, n))
    r = reg.apply(ev("adjusted", 5, Spec(8, 16, 200)))
    assert (r.state, r.vcpu, r.mem_gb, r.storage_gb) == ("adjusted", 8, 16, 200)
    assert r.delivered == T + timedelta(days=3)
    reg.apply(ev("deregistration_requested", 6))
    r = reg.apply(ev("deregistered", 7))
    assert r.state == "deregistered" and r.deregistered == T + timedelta(days=7)


@pytest.mark.parametrize(
    "steps, bad",
    [
        ([], "accepted"),  # nothing applied yet
        (["applied"], "delivered"),  # no acceptance, no baseline check
        (["applied", "accepted"], "delivered"),  # baseline not passed
        (["applied", "refused"], "baseline_passed"),
    ],
)
def test_invalid_steps(steps: list[str], bad: str) -> None:
    reg = Registry()
    for n, t in enumerate(steps):
        reg.apply(ev(t, n, Spec(4, 8, 100) if n == 0 else None))
    with pytest.raises(LifecycleError):
        reg.apply(ev(bad, 9, Spec(4, 8, 100)))


def test_other_provider_cannot_touch_resource() -> None:
    reg = Registry()
    reg.apply(ev("delivered", 0, Spec(4, 8, 100)))
    with pytest.raises(LifecycleError, match="belongs to p1"):
        reg.apply(ev("adjusted", 1, Spec(8, 8, 100), provider="p2"))


def test_new_resource_needs_spec() -> None:
    with pytest.raises(LifecycleError, match="spec"):
        Registry().apply(ev("applied", 0))


@pytest.mark.parametrize(
    "spec, ts, interval_s",
    [
        (Spec(0, 8, 100), T, 15),
        (Spec(4, -1, 100), T, 15),
        (Spec(4, 8, -5), T, 15),
        (Spec(4, 8, 100), T.replace(tzinfo=None), 15),
        (Spec(4, 8, 100), T, 0),
    ],
)
def test_bad_specs_times_and_intervals_are_refused(spec: Spec, ts: datetime, interval_s: int) -> None:
    bad = LifecycleEvent("e", "r1", "delivered", ts, "p1", spec=spec, interval_s=interval_s)
    with pytest.raises(LifecycleError):
        Registry().apply(bad)


def test_resource_class_is_kept_until_an_event_names_another() -> None:
    reg = Registry()
    spec = Spec(4, 8, 100)
    assert reg.apply(ev("delivered", 0, spec)).resource_class == "standard"  # no class: standard
    gpu = LifecycleEvent("e1", "r1", "adjusted", T + timedelta(days=1), "p1", spec=spec, resource_class="gpu")
    assert reg.apply(gpu).resource_class == "gpu"
    assert reg.apply(ev("adjusted", 2, Spec(8, 8, 100))).resource_class == "gpu"  # none named: unchanged
    first = LifecycleEvent("n0", "r2", "delivered", T, "p1", spec=spec, resource_class="high-mem")
    assert reg.apply(first).resource_class == "high-mem"


@pytest.mark.parametrize("cls", ["GPU", "a b", "-x", "x" * 41, "显卡"])
def test_bad_resource_class_is_refused(cls: str) -> None:
    with pytest.raises(LifecycleError, match="resource_class"):
        Registry().apply(LifecycleEvent("e", "r1", "delivered", T, "p1", spec=Spec(1, 1, 1), resource_class=cls))
