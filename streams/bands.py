"""Utilization bands (§29): window figures, capacity-weighted aggregates, bands with hysteresis (pure).

A band is ``low`` below the low threshold (20 %), ``high`` above the high threshold (80 %),
``normal`` in between (both thresholds inclusive in ``normal``). A resource already in ``high``
leaves it only when its value drops *below* ``high - margin`` (78 %), one in ``low`` only when
it rises *above* ``low + margin`` (22 %): a value hovering at a threshold does not flap.
The banded figure is a window's p95 (the same figure right-sizing judges), see
docs/utilization.md. Assurance periods (§28) tighten the thresholds through a hook: the
caller passes the :class:`BandPolicy` in force at ``now``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from opscenter.inventory import Resource
from opscenter.wire import Event

METRICS = ("cpu", "memory", "storage")
WINDOWS = ("1h", "24h", "7d")
WINDOW_S = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
STATS = ("mean", "max", "p95")
BANDS = ("low", "normal", "high")
#: column prefix of each metric in the rollups and in :class:`WindowFigures`
PREFIX = {"cpu": "cpu", "memory": "mem", "storage": "storage"}
#: the spec field that weighs a metric in unit and district aggregates
WEIGHT_FIELD = {"cpu": "vcpu", "memory": "mem_gb", "storage": "storage_gb"}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Band thresholds of one metric, in percent, with the hysteresis margin."""

    low_pct: float = 20.0
    high_pct: float = 80.0
    margin_pct: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_pct < self.high_pct <= 100.0:
            raise ValueError(f"need 0 <= low < high <= 100, not {self.low_pct}, {self.high_pct}")
        if self.margin_pct < 0 or self.low_pct + self.margin_pct >= self.high_pct - self.margin_pct:
            raise ValueError(f"margin {self.margin_pct} must be >= 0 and keep the bands apart")


@dataclass(frozen=True)
class BandPolicy:
    """Thresholds per metric (a default for the others)."""

    default: Thresholds = Thresholds()
    per_metric: Mapping[str, Thresholds] = field(default_factory=dict)

    def thresholds(self, metric: str) -> Thresholds:
        """The thresholds of ``metric``."""
        return self.per_metric.get(metric, self.default)


#: the hook for assurance periods: the tighter policy in force at an instant, or None
AssuranceHook = Callable[[datetime], "BandPolicy | None"]


def policy_at(now: datetime, normal: BandPolicy, assurance: AssuranceHook | None = None) -> BandPolicy:
    """The policy in force at ``now``: the assurance period's if one applies, else ``normal``."""
    tighter = assurance(now) if assurance is not None else None
    return tighter if tighter is not None else normal


def classify(value_pct: float, previous: str | None, th: Thresholds) -> str:
    """The band of ``value_pct`` given the band it was in (None: no band yet), with hysteresis."""
    if previous == "high" and value_pct >= th.high_pct - th.margin_pct:
        return "high"
    if previous == "low" and value_pct <= th.low_pct + th.margin_pct:
        return "low"
    if value_pct > th.high_pct:
        return "high"
    if value_pct < th.low_pct:
        return "low"
    return "normal"


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """Mean, max and p95 (percent) of one resource over one rolling window."""

    resource_id: str
    window: str
    samples: int
    buckets: int  # minutes (1 h window) or hours (24 h, 7 d) that hold data
    cpu_mean: float
    cpu_max: float
    cpu_p95: float
    mem_mean: float
    mem_max: float
    mem_p95: float
    storage_mean: float
    storage_max: float
    storage_p95: float

    def stat(self, metric: str, stat: str) -> float:
        """One figure, e.g. ``stat("memory", "p95")``."""
        return float(getattr(self, f"{PREFIX[metric]}_{stat}"))

    def doc(self) -> dict[str, object]:
        """JSON-ready form: ``{"samples", "buckets", "cpu": {"mean", "max", "p95"}, …}``."""
        out: dict[str, object] = {"samples": self.samples, "buckets": self.buckets}
        for m in METRICS:
            out[m] = {s: round(self.stat(m, s), 3) for s in STATS}
        return out


def figures_from_row(window: str, row: Mapping[str, object]) -> WindowFigures:
    """A :class:`WindowFigures` from a row of ``util_window_*.sql``."""
    return WindowFigures(
        str(row["resource_id"]), window, int(row["sample_count"]), int(row["buckets"]),  # type: ignore[call-overload]
        *(float(row[f"{PREFIX[m]}_{s}"]) for m in METRICS for s in STATS),  # type: ignore[arg-type]
    )  # fmt: skip


# ------------------------------------------------------------------------------ transitions


@dataclass(frozen=True, slots=True)
class BandState:
    """The band a resource's metric is in over a window, and since when (epoch ms)."""

    band: str
    since_ms: int


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of band; ``prev_since_ms`` makes its id stable across retries and restarts."""

    resource_id: str
    metric: str
    window: str
    from_band: str | None
    to_band: str
    value_pct: float
    at_ms: int
    prev_since_ms: int

    @property
    def event_id(self) -> str:
        """Same transition (same previous state, same new band) → same id, whenever it is computed."""
        raw = "|".join(("band", self.resource_id, self.metric, self.window, str(self.from_band), self.to_band,
                        str(self.prev_since_ms)))  # fmt: skip
        return "band-" + hashlib.sha1(raw.encode()).hexdigest()[:24]


def step(
    resource_id: str, metric: str, window: str, value_pct: float, state: BandState | None,
    th: Thresholds, now_ms: int,
) -> tuple[BandState, Transition | None]:
    """The new state of one (resource, metric, window) and the transition, if the band changed.

    The first classification of a resource is a transition (``from`` None) only when it is
    out of band: a fresh start does not announce thousands of ``normal`` resources.
    """  # fmt: skip
    previous = state.band if state is not None else None
    band = classify(value_pct, previous, th)
    if band == previous:
        return state, None  # type: ignore[return-value]
    new = BandState(band, now_ms)
    if previous is None and band == "normal":
        return new, None
    prev_since = state.since_ms if state is not None else 0
    return new, Transition(resource_id, metric, window, previous, band, value_pct, now_ms, prev_since)


def band_event(t: Transition, resource: Resource | None) -> Event:
    """events.v1 ``band_change`` of a transition, labelled with the resource's owners (and its
    registered name in ``data.name``, for the alert summaries duty officers read)."""
    return Event(
        event_id=t.event_id,
        kind="band_change",
        ts=datetime.fromtimestamp(t.at_ms / 1000, tz=timezone.utc),
        subject=t.resource_id,
        provider_id=resource.provider_id if resource else "",
        unit_id=resource.unit_id if resource else "",
        district_id=resource.district_id if resource else "",
        resource_id=t.resource_id,
        data={"metric": t.metric, "window": t.window, "from": t.from_band, "to": t.to_band,
              "value": round(t.value_pct, 3), **({"name": resource.name} if resource and resource.name else {})},
    )  # fmt: skip


# ------------------------------------------------------------------------------ aggregates


@dataclass(frozen=True, slots=True)
class MetricAggregate:
    """Capacity-weighted figures of one metric over a group of resources."""

    capacity: float  # total vCPU / GB memory / GB storage of the resources with data
    mean_pct: float  # = used capacity / total capacity, on average over the window
    p95_pct: float  # capacity-weighted mean of the resources' p95 (not a percentile of the pool)
    max_pct: float  # the highest resource max


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Utilization of one unit or district over one window."""

    level: str  # "unit" or "district"
    group_id: str
    window: str
    resources: int
    metrics: dict[str, MetricAggregate]

    def doc(self, policy: BandPolicy | None = None) -> dict[str, object]:
        """JSON-ready form; with a policy, each metric's band (by p95, no hysteresis)."""
        out: dict[str, object] = {"level": self.level, "id": self.group_id, "window": self.window,
                                  "resources": self.resources}  # fmt: skip
        for m, a in self.metrics.items():
            d: dict[str, object] = {"capacity": a.capacity, "mean": round(a.mean_pct, 3),
                                    "p95": round(a.p95_pct, 3), "max": round(a.max_pct, 3)}  # fmt: skip
            if policy is not None:
                d["band"] = classify(a.p95_pct, None, policy.thresholds(m))
            out[m] = d
        return out


def capacity_weighted(
    figures: Iterable[WindowFigures], resources: Mapping[str, Resource] | Callable[[str], Resource | None],
    level: str,
) -> dict[tuple[str, str], Aggregate]:
    """Aggregates per (unit or district, window), weighting each metric by its capacity.

    cpu is weighted by vCPU, memory by GB memory, storage by GB storage; a resource with no
    registry entry or no capacity for a metric does not count for that metric.
    """  # fmt: skip
    if level not in ("unit", "district"):
        raise ValueError(f"level is unit or district, not {level!r}")
    get = resources.get if isinstance(resources, Mapping) else resources
    acc: dict[tuple[str, str], list[float]] = {}  # (group, window) -> per metric: w, w*mean, w*p95, max
    counts: dict[tuple[str, str], int] = {}
    for f in figures:
        res = get(f.resource_id)
        if res is None or f.samples <= 0:
            continue
        key = (res.unit_id if level == "unit" else res.district_id, f.window)
        a = acc.get(key)
        if a is None:
            a = acc[key] = [0.0] * (4 * len(METRICS))
            counts[key] = 0
        counts[key] += 1
        for i, m in enumerate(METRICS):
            w = float(getattr(res, WEIGHT_FIELD[m]))
            if w <= 0:
                continue
            a[4 * i] += w
            a[4 * i + 1] += w * f.stat(m, "mean")
            a[4 * i + 2] += w * f.stat(m, "p95")
            a[4 * i + 3] = max(a[4 * i + 3], f.stat(m, "max"))
    out: dict[tuple[str, str], Aggregate] = {}
    for (group, window), a in acc.items():
        metrics = {
            m: MetricAggregate(a[4 * i], a[4 * i + 1] / a[4 * i], a[4 * i + 2] / a[4 * i], a[4 * i + 3])
            for i, m in enumerate(METRICS)
            if a[4 * i] > 0
        }
        out[(group, window)] = Aggregate(level, group, window, counts[(group, window)], metrics)
    return out
