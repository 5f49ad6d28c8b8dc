"""The resource registry: resource id → provider, unit, district, spec and lifecycle state (§19–§21)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from opscenter.wire import LifecycleEvent

#: bounds of what ClickHouse stores (UInt32 spec columns; DateTime64 read back at start): a value
#: outside them would fail every insert retry, or every later start, of the registry agent
UINT32_MAX = 2**32 - 1
TS_MIN = datetime(1970, 1, 1, tzinfo=timezone.utc)
TS_MAX = datetime(2200, 1, 1, tzinfo=timezone.utc)
#: a price class (计费类别, §6): the billing standard may price classes differently (opscenter/fees.py)
DEFAULT_CLASS = "standard"
CLASS_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")

# Which lifecycle steps may follow which state. ``None`` is "not known yet".
_ALLOWED: dict[str | None, frozenset[str]] = {
    None: frozenset({"applied", "delivered"}),  # "delivered" alone: resources already on the cloud
    "applied": frozenset({"accepted", "refused"}),
    "accepted": frozenset({"baseline_passed", "baseline_failed"}),
    "refused": frozenset({"applied"}),
    "baseline_failed": frozenset({"baseline_passed", "baseline_failed"}),
    "baseline_passed": frozenset({"delivered"}),
    "delivered": frozenset({"acceptance_passed", "adjusted", "deregistration_requested"}),
    "acceptance_passed": frozenset({"adjusted", "deregistration_requested"}),
    "adjusted": frozenset({"adjusted", "deregistration_requested"}),
    "deregistration_requested": frozenset({"deregistered", "adjusted"}),
    "deregistered": frozenset(),
}

#: states in which telemetry is accepted: the resource exists and is under supervision (§34)
SUPERVISED_STATES = frozenset(
    {"baseline_passed", "delivered", "acceptance_passed", "adjusted", "deregistration_requested"}
)


class LifecycleError(ValueError):
    """A lifecycle event that does not fit the resource's current state."""


@dataclass(frozen=True, slots=True)
class Resource:
    resource_id: str
    provider_id: str
    unit_id: str
    district_id: str
    name: str
    vcpu: int
    mem_gb: int
    storage_gb: int
    state: str
    interval_s: int
    updated: datetime
    delivered: datetime | None = None
    deregistered: datetime | None = None
    resource_class: str = DEFAULT_CLASS


def apply_event(current: Resource | None, ev: LifecycleEvent) -> Resource:
    """Return the resource after ``ev``; raise :class:`LifecycleError` if the step is invalid."""
    if ev.ts.tzinfo is None:
        raise LifecycleError("ts needs a time zone")
    if not TS_MIN <= ev.ts < TS_MAX:
        raise LifecycleError(f"ts {ev.ts.isoformat()} is not between {TS_MIN.year} and {TS_MAX.year}")
    if ev.spec is not None and not (
        0 < ev.spec.vcpu <= UINT32_MAX and 0 < ev.spec.mem_gb <= UINT32_MAX and 0 <= ev.spec.storage_gb <= UINT32_MAX
    ):
        raise LifecycleError(f"spec must have vcpu > 0, mem_gb > 0, storage_gb >= 0 (all < 2^32): {ev.spec}")
    if not 0 < ev.interval_s <= UINT32_MAX:
        raise LifecycleError(f"interval_s must be > 0 and < 2^32, not {ev.interval_s}")
    if ev.resource_class and not CLASS_RE.match(ev.resource_class):
        raise LifecycleError(f"resource_class {ev.resource_class[:60]!r}: lowercase letters, digits, _ and -, ≤ 40")
    state = current.state if current else None
    if ev.type not in _ALLOWED[state]:
        raise LifecycleError(f"{ev.type!r} not allowed after {state or 'nothing'!r}")
    if current is not None and ev.provider_id != current.provider_id:
        raise LifecycleError(
            f"resource {ev.resource_id} belongs to {current.provider_id}, not {ev.provider_id}"
        )
    if current is None:
        if ev.spec is None:
            raise LifecycleError(f"{ev.type!r} of a new resource needs a spec")
        current = Resource(
            resource_id=ev.resource_id,
            provider_id=ev.provider_id,
            unit_id=ev.unit_id,
            district_id=ev.district_id,
            name=ev.name or ev.resource_id,
            vcpu=ev.spec.vcpu,
            mem_gb=ev.spec.mem_gb,
            storage_gb=ev.spec.storage_gb,
            state=ev.type,
            interval_s=ev.interval_s,
            updated=ev.ts,
            resource_class=ev.resource_class or DEFAULT_CLASS,
        )
    changes: dict[str, object] = {"state": ev.type, "updated": ev.ts}
    if ev.spec is not None:
        changes.update(vcpu=ev.spec.vcpu, mem_gb=ev.spec.mem_gb, storage_gb=ev.spec.storage_gb)
    if ev.name:
        changes["name"] = ev.name
    if ev.unit_id:
        changes["unit_id"] = ev.unit_id
    if ev.district_id:
        changes["district_id"] = ev.district_id
    if ev.resource_class:  # empty: unchanged
        changes["resource_class"] = ev.resource_class
    if ev.type == "delivered":
        changes["delivered"] = ev.ts
    if ev.type == "deregistered":
        changes["deregistered"] = ev.ts
    if ev.type == "adjusted":
        changes["state"] = "adjusted"
    return replace(current, **changes)  # type: ignore[arg-type]


class Registry:
    """In-memory view of the inventory; the source of truth is ClickHouse ``inventory``."""

    def __init__(self, resources: dict[str, Resource] | None = None) -> None:
        self._by_id: dict[str, Resource] = dict(resources or {})

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, resource_id: str) -> Resource | None:
        return self._by_id.get(resource_id)

    def put(self, res: Resource) -> None:
        self._by_id[res.resource_id] = res

    def apply(self, ev: LifecycleEvent) -> Resource:
        res = apply_event(self._by_id.get(ev.resource_id), ev)
        self._by_id[res.resource_id] = res
        return res

    def all(self) -> list[Resource]:
        return list(self._by_id.values())

    def of_provider(self, provider_id: str) -> list[Resource]:
        return [r for r in self._by_id.values() if r.provider_id == provider_id]
