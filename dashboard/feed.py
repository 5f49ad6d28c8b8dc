"""The live feed: one Redis subscription per web process, fanned out to websocket clients.

Every client gets *frames*: the whole screen state (districts and units with their
capacity-weighted utilization and band, totals, the recent history of state changes, open
alerts, telemetry completeness per provider, and — from :mod:`dashboard.panels` — SLA gauges
per provider and pipeline health), at most ``frame_interval_s`` apart and only when something
changed. A frame is a
complete picture, so a slow client is coalesced — it always gets the newest frame and never
a backlog — and can never hold up the others. Frames carry a sequence number; a client that
sees a gap (or reconnects) simply takes the next frame, or asks ``{"type": "snapshot"}``.
The server sends a heartbeat every ``heartbeat_s``, forgets clients that vanish and drops one
whose send has been pending for ``SEND_TIMEOUT_S`` (it stopped reading). A client that connects
gets its scope's newest frame when that is recent (one encoding per scope, not per screen, when
a whole wall reconnects at once).

Scope (docs/architecture.md, "Wall screen"): a provider, unit or district viewer gets figures of
its own resources only. SLA gauges go to those who may read ``GET /api/v1/sla`` (bureau, auditor,
a provider for itself) and to kiosks; pipeline health to city-wide viewers only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from starlette.websockets import WebSocket, WebSocketDisconnect

from dashboard.panels import Panels, sla_cards
from opscenter import __version__
from opscenter.auth import Principal
from opscenter.inventory import SUPERVISED_STATES, Registry
from streams.incidents import ACTIVE_STATES
from streams.live import CHANNEL as LIVE_CHANNEL
from streams.live import RES_PREFIX, follow
from streams.sla_agent import INCIDENT_CHANNEL, OPEN_KEY, incident_key

log = logging.getLogger(__name__)

#: how uvicorn serves the feed: the sans-I/O websockets protocol, without per-message deflate —
#: one frame goes to every screen of a scope, and compressing it once per client took a third
#: of the CPU at 1,000 screens (bench fanout); frames are a few tens of KB on a LAN
UVICORN_WS: dict[str, Any] = {"ws": "websockets-sansio", "ws_per_message_deflate": False}

#: the cyclic collector's thresholds in a web process (allocations before a young collection, then
#: young collections per middle one, middle per full one). With CPython's (700, 10, 10) a full
#: collection ran every few seconds while 1,000 screens were connected, and each paused the event
#: loop — every screen's next frame — for 50–110 ms (bench fanout; one such pause is 1 % of a
#: 10-second run's deliveries: the p99). Garbage without cycles is still freed at once; cycles wait
#: for a larger batch (at most 50,000 new objects, a few MB).
GC_THRESHOLDS = (50_000, 50, 100)

EVENTS_CHANNEL = "opscenter:events"  # band changes, SLA events, … (published by the domains)
ALERTS_CHANNEL = "opscenter:alerts"  # alert notices (published by the alert agent)
PERIODS_KEY = "opscenter:alerts:periods"  # assurance periods (重保), kept by the alert engine
ALERTS_KEY = "opscenter:alerts:alerts"  # alert state (fingerprint → alert JSON), kept by the alert engine
SEVERITIES = ("P1", "P2", "P3", "P4")
LOW_PCT, HIGH_PCT = 20.0, 80.0
STALE_MS = 120_000  # a resource silent this long is not "reporting"
#: roles shown SLA gauges: the readers of GET /api/v1/sla (dashboard.api_incidents.SLA_READERS), and
#: kiosks (wall devices of the bureau); a provider sees its own gauge only
SLA_VIEWERS = frozenset({"bureau", "auditor", "provider", "kiosk"})
MAX_SLA_CARDS = 6  # more providers: the worst six are shown (a wall has room for six gauges)
#: a send still pending after this long: the client is stuck (not reading) and is dropped
SEND_TIMEOUT_S = 10.0
#: a screen that connects gets its scope's newest frame if it is at most this old, instead of an
#: encoding of its own (a wall of screens reconnecting at once after a restart costs one encoding)
SHARED_MAX_AGE_S = 1.0


def tune_gc() -> tuple[int, int, int]:
    """Collect less often in a process serving the live feed (:data:`GC_THRESHOLDS`; never lowers a
    threshold); returns the thresholds before, to restore them."""
    before = gc.get_threshold()
    gc.set_threshold(*(max(a, b) for a, b in zip(before, GC_THRESHOLDS)))
    return before


def band(value: float | None, low: float = LOW_PCT, high: float = HIGH_PCT) -> str:
    """The §29 band of a utilization figure (no hysteresis: the screen shows the value's band)."""
    if value is None:
        return "none"
    return "low" if value < low else "high" if value > high else "normal"


@dataclass
class _Agg:
    weight: float = 0.0
    cpu: float = 0.0
    mem: float = 0.0
    storage: float = 0.0
    w_mem: float = 0.0
    w_sto: float = 0.0
    resources: int = 0
    reporting: int = 0


def aggregate(
    latest: dict[str, tuple[float, float, float, int]], registry: Registry, now_ms: int,
    viewer: Principal | None = None,
) -> tuple[dict[str, _Agg], dict[str, _Agg], dict[str, _Agg]]:
    """Capacity-weighted live utilization per district, per unit and per provider (weights: vCPU,
    GB, GB) over the in-service resources the viewer may see (all of them without a viewer); each
    also counts its resources and those that reported within ``STALE_MS`` (telemetry completeness)."""
    districts: dict[str, _Agg] = {}
    units: dict[str, _Agg] = {}
    providers: dict[str, _Agg] = {}
    for res in registry.all():
        if res.state not in SUPERVISED_STATES:  # applied, refused or deregistered: not on the cloud
            continue
        if viewer is not None and not viewer.sees(res.provider_id, res.unit_id, res.district_id):
            continue
        for key, table in ((res.district_id, districts), (res.unit_id, units), (res.provider_id, providers)):
            agg = table.get(key)
            if agg is None:
                agg = table[key] = _Agg()
            agg.resources += 1
            value = latest.get(res.resource_id)
            if value is None or now_ms - value[3] > STALE_MS:
                continue
            agg.reporting += 1
            agg.weight += res.vcpu
            agg.cpu += value[0] * res.vcpu
            agg.w_mem += res.mem_gb
            agg.mem += value[1] * res.mem_gb
            agg.w_sto += res.storage_gb
            agg.storage += value[2] * res.storage_gb
    return districts, units, providers


def _visible(viewer: Principal | None, labels: dict[str, str]) -> bool:
    """Whether an alert or history line with these labels is inside the viewer's scope."""
    if viewer is None or viewer.scope_field is None:
        return True
    return viewer.sees(labels.get("provider", ""), labels.get("unit", ""), labels.get("district", ""))


def _sees_sla(viewer: Principal | None) -> bool:
    return viewer is None or viewer.role in SLA_VIEWERS


def _sees_pipeline(viewer: Principal | None) -> bool:
    return viewer is None or viewer.scope_field is None


def _scope_key(viewer: Principal | None) -> tuple[str, str]:
    """Viewers with the same key get the same frame (encoded once)."""
    if viewer is None or viewer.scope_field is None:
        return ("", "sla" if _sees_sla(viewer) else "")
    return (viewer.role, viewer.scope)


def completeness(providers: dict[str, _Agg], names: dict[str, str]) -> list[dict[str, Any]]:
    """Per provider: in-service resources, those reporting, and the share (None without resources)."""
    return [
        {"id": pid, "name": names.get(pid, pid), "resources": a.resources, "reporting": a.reporting,
         "share": round(a.reporting / a.resources, 4) if a.resources else None}
        for pid, a in sorted(providers.items())
    ]  # fmt: skip


def _figures(agg: _Agg) -> dict[str, Any]:
    cpu = agg.cpu / agg.weight if agg.weight else None
    mem = agg.mem / agg.w_mem if agg.w_mem else None
    sto = agg.storage / agg.w_sto if agg.w_sto else None
    worst = max((v for v in (cpu, mem, sto) if v is not None), default=None)
    bands = {band(v) for v in (cpu, mem, sto) if v is not None}
    overall = "high" if "high" in bands else "low" if bands == {"low"} else "normal" if bands else "none"
    return {
        "cpu": None if cpu is None else round(cpu, 1),
        "mem": None if mem is None else round(mem, 1),
        "storage": None if sto is None else round(sto, 1),
        "peak": None if worst is None else round(worst, 1),
        "band": overall,
        "resources": agg.resources,
        "reporting": agg.reporting,
    }


@dataclass(eq=False)  # identity: clients live in a set
class _Client:
    ws: WebSocket
    viewer: Principal | None = None
    frame: str | None = None  # the newest frame, JSON text (shared by every client of a scope)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    sending_since: float = 0.0  # monotonic start of the send in flight (0: none)
    sender: asyncio.Task | None = None  # cancelled by the frame loop when a send is stuck


class LiveHub:
    """Follows Redis and serves frames to every connected screen of this web process."""

    def __init__(
        self,
        redis: Redis,
        registry: Registry,
        names: dict[str, str],
        districts: list[str] | None = None,
        frame_interval_s: float = 0.1,
        heartbeat_s: float = 10.0,
        history: int = 30,
        providers: list[str] | None = None,
        panels: Panels | None = None,
    ) -> None:
        self.redis, self.registry, self.names = redis, registry, names
        self.district_ids = list(districts or [])  # shown even while they have no resources
        self.provider_ids = list(providers or [])  # SLA cards shown even before their first incident
        self.panels = panels  # SLA gauges and pipeline health (None: not shown, e.g. in the fan-out bench)
        # open (not yet restored), non-drill incidents: incident id → (provider, severity)
        self.incidents: dict[str, tuple[str, str]] = {}
        self.frame_interval_s, self.heartbeat_s = frame_interval_s, heartbeat_s
        self.latest: dict[str, tuple[float, float, float, int]] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self.clients: set[_Client] = set()
        self.seq = 0
        # alert id → (severity, state, labels), for alerts not resolved
        self.open_alerts: dict[str, tuple[str, str, dict[str, str]]] = {}
        self.periods: list[dict[str, Any]] = []  # assurance periods (id, name_zh, name_en, starts_ms, ends_ms)
        self.notice_ms = 0  # publish time of the newest live notice applied (for delivery latency)
        self._changed = asyncio.Event()  # set when something changed: frames are event-driven
        # the newest frame of each scope (monotonic time of its encoding, JSON text)
        self._shared: dict[tuple[str, str], tuple[float, str]] = {}
        self._samples: deque[tuple[float, int]] = deque(maxlen=2000)  # (monotonic, samples) for the rate
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        await self._reload()
        self._tasks = [
            asyncio.create_task(self._follow(), name="live-follow"),
            asyncio.create_task(self._frames(), name="live-frames"),
        ]
        if self.panels is not None:
            self.panels.on_change = self._changed.set
            self.panels.start()

    async def stop(self) -> None:
        if self.panels is not None:
            await self.panels.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _reload(self) -> None:
        """Everything the screen shows from Redis state (at start and after Redis came back)."""
        await self._load()
        await self._load_periods()
        await self._load_alerts()
        await self._load_incidents()

    async def _load(self) -> None:
        """The live value of every resource, from Redis (so a restarted web process shows data at once)."""
        keys = [RES_PREFIX + r.resource_id for r in self.registry.all()]
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            for key, raw in zip(chunk, await self.redis.mget(chunk)):
                if raw:
                    d = orjson.loads(raw)
                    self.latest[key[len(RES_PREFIX) :]] = (d["cpu"], d["mem"], d["storage"], d["ts_ms"])

    async def _load_periods(self) -> None:
        try:
            raw = await self.redis.hgetall(PERIODS_KEY)
        except Exception as exc:  # noqa: BLE001 - no banner rather than no screen
            log.warning("assurance periods unavailable: %s", exc)
            return
        self.periods = [orjson.loads(v) for v in raw.values()]
        self._changed.set()

    async def _load_alerts(self) -> None:
        try:
            raw = await self.redis.hgetall(ALERTS_KEY)
        except Exception as exc:  # noqa: BLE001
            log.warning("alert state unavailable: %s", exc)
            return
        for v in raw.values():
            self._track(orjson.loads(v))

    async def _load_incidents(self) -> None:
        try:
            ids = [i.decode() if isinstance(i, bytes) else i for i in await self.redis.smembers(OPEN_KEY)]
            pipe = self.redis.pipeline(transaction=False)
            for i in ids:
                pipe.hmget(incident_key(i), "provider_id", "severity", "state", "drill")
            rows = await pipe.execute() if ids else []
        except Exception as exc:  # noqa: BLE001 - no incident counts rather than no screen
            log.warning("incident state unavailable: %s", exc)
            return
        self.incidents = {}
        for iid, row in zip(ids, rows):
            pid, sev, state, drill = (v.decode() if isinstance(v, bytes) else (v or "") for v in row)
            self._track_incident({"incident_id": iid, "provider_id": pid, "severity": sev, "state": state,
                                  "drill": drill not in ("", "0")})  # fmt: skip
        self._changed.set()

    def _track_incident(self, doc: dict[str, Any]) -> None:
        iid = str(doc.get("incident_id", ""))
        if doc.get("state") in ACTIVE_STATES and not doc.get("drill") and iid:
            self.incidents[iid] = (str(doc.get("provider_id", "")), str(doc.get("severity", "")))
        else:
            self.incidents.pop(iid, None)

    def _track(self, a: dict[str, Any]) -> None:
        aid = a.get("alert_id") or a.get("fingerprint", "")
        if a.get("state") == "resolved":
            self.open_alerts.pop(aid, None)
        elif aid:
            self.open_alerts[aid] = (a.get("severity", ""), a.get("state", ""), a.get("labels") or {})

    def assurance(self, now_ms: int) -> dict[str, Any] | None:
        """The assurance period (重保) in force now, for the banner; of overlapping ones, the last to end."""
        inside = [p for p in self.periods if p.get("starts_ms", 0) <= now_ms < p.get("ends_ms", 0)]
        if not inside:
            return None
        p = max(inside, key=lambda x: x["ends_ms"])
        return {"name": p.get("name_zh", ""), "name_en": p.get("name_en", ""), "end_ms": p["ends_ms"]}

    async def _follow(self) -> None:
        await follow(self.redis, (LIVE_CHANNEL, EVENTS_CHANNEL, ALERTS_CHANNEL, INCIDENT_CHANNEL), self._apply,
                     self._reload, "live feed")  # fmt: skip

    def _apply(self, channel: str, data: bytes) -> None:
        doc = orjson.loads(data)
        if channel == LIVE_CHANNEL and doc.get("type") == "telemetry":
            rows = doc.get("resources", [])
            for rid, cpu, mem, sto, ts in rows:
                self.latest[rid] = (cpu, mem, sto, ts)
            self._samples.append((time.monotonic(), len(rows)))
            self.notice_ms = max(self.notice_ms, int(doc.get("ts_ms", 0)))
            self._changed.set()
        elif channel == ALERTS_CHANNEL and doc.get("type") == "assurance":
            asyncio.ensure_future(self._load_periods())  # a period started, ended or changed
        elif channel == ALERTS_CHANNEL:
            for a in doc.get("alerts") or []:  # one history line per alert state change
                self._track(a)
                if self.panels is not None and str(a.get("rule", "")).startswith("sla_"):
                    self.panels.incidents_changed()  # an SLA breach was raised: "breaches today" moved
                self.history.appendleft({
                    "ts_ms": doc.get("at_ms") or a.get("updated_ms"), "type": doc.get("type"),
                    "severity": a.get("severity", ""), "state": a.get("state", ""),
                    "summary_zh": a.get("summary_zh", ""), "summary_en": a.get("summary_en", ""),
                    "labels": a.get("labels") or {},
                })  # fmt: skip
            self._changed.set()
        elif channel == EVENTS_CHANNEL:
            self.history.appendleft({"ts_ms": doc.get("ts_ms"), "type": doc.get("kind", ""), **doc})
            self._changed.set()
        elif channel == INCIDENT_CHANNEL:
            self._track_incident(doc)
            if self.panels is not None:
                self.panels.incidents_changed()  # the SLA shares may have moved
            self._changed.set()

    # -- frames ---------------------------------------------------------------------
    def frame(self, now_ms: int | None = None, viewer: Principal | None = None) -> dict[str, Any]:
        """The whole screen state now, limited to what ``viewer`` may see (a provider, unit or
        district sees only its own resources, alerts and history)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        districts, units, providers = aggregate(self.latest, self.registry, now_ms, viewer)
        if viewer is None or viewer.scope_field is None:
            for d in self.district_ids:
                districts.setdefault(d, _Agg())
        cutoff = time.monotonic() - 60
        recent = sum(n for t, n in self._samples if t >= cutoff)
        alerts = [(sev, st) for sev, st, labels in self.open_alerts.values() if _visible(viewer, labels)]
        return {
            "type": "frame",
            "version": __version__,
            "ts_ms": now_ms,
            "scope": None if viewer is None or viewer.scope_field is None else viewer.scope,
            "districts": sorted(
                ({"id": k, "name": self.names.get(k, k), **_figures(v)} for k, v in districts.items()),
                key=lambda d: d["id"],
            ),
            "units": sorted(
                ({"id": k, "name": self.names.get(k, k), **_figures(v)} for k, v in units.items()),
                key=lambda d: -(d["peak"] or -1),
            ),
            "hot": self._hot(viewer),
            "totals": {
                "resources": sum(d.resources for d in districts.values()),
                "reporting": sum(d.reporting for d in districts.values()),
                "updated_last_minute": recent if viewer is None or viewer.scope_field is None else None,
                "notice_ms": self.notice_ms,
            },
            "history": [h for h in self.history if _visible(viewer, h.get("labels") or {})],
            "assurance": self.assurance(now_ms),
            "alerts_open": {sev: sum(1 for s, _ in alerts if s == sev) for sev in SEVERITIES},
            "alerts_acknowledged": sum(1 for _, st in alerts if st == "acknowledged"),
            "providers": completeness(providers, self.names),
            "sla": self._sla(viewer, providers),
            "pipeline": self.panels.health if self.panels is not None and _sees_pipeline(viewer) else None,
        }

    def _sla(self, viewer: Principal | None, in_scope: dict[str, _Agg]) -> dict[str, Any] | None:
        """SLA gauges per provider this month (from the panels) with live open incidents (from
        Redis); None for viewers who may not see SLA figures."""
        if self.panels is None or not _sees_sla(viewer):
            return None
        p = self.panels
        if viewer is not None and viewer.role == "provider":
            ids = [viewer.scope]
        else:
            ids = sorted(set(self.provider_ids) | set(in_scope) | set(p.sla)
                         | {pid for pid, _ in self.incidents.values()})  # fmt: skip
        cards, hidden = sla_cards(ids, p.sla, self.incidents.values(), self.names, MAX_SLA_CARDS)
        return {"period": "month", "as_of_ms": p.sla_ms, "ok": p.sla_ok, "providers": cards, "hidden": hidden}

    def _hot(self, viewer: Principal | None = None, n: int = 6) -> list[dict[str, Any]]:
        """The busiest resources by cpu, within the viewer's scope (names are provider-supplied: the
        page renders them as text)."""
        items = list(self.latest.items())
        if viewer is not None and viewer.scope_field is not None:
            items = [(rid, v) for rid, v in items if (r := self.registry.get(rid)) is not None
                     and viewer.sees(r.provider_id, r.unit_id, r.district_id)]  # fmt: skip
        top = sorted(items, key=lambda kv: (-kv[1][0], -kv[1][3]))[:n]  # ties: newest first
        out = []
        for rid, (cpu, mem, sto, ts) in top:
            res = self.registry.get(rid)
            out.append({"id": rid, "name": res.name if res else rid, "cpu": round(cpu, 1),
                        "mem": round(mem, 1), "band": band(cpu)})  # fmt: skip
        return out

    def _encode(self, viewer: Principal | None = None) -> str:
        return orjson.dumps({**self.frame(viewer=viewer), "seq": self.seq}).decode()

    def _newest(self, viewer: Principal | None) -> str:
        """A frame for a screen that just connected: its scope's newest, if recent enough."""
        key, now = _scope_key(viewer), time.monotonic()
        shared = self._shared.get(key)
        if shared is not None and now - shared[0] <= SHARED_MAX_AGE_S:
            return shared[1]
        self.seq += 1
        payload = self._encode(viewer)
        self._shared[key] = (now, payload)
        return payload

    async def _frames(self) -> None:
        """Send a frame as soon as something changed, at most every ``frame_interval_s``; a heartbeat
        frame when nothing did for ``heartbeat_s``."""
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=self.heartbeat_s)
            except asyncio.TimeoutError:
                pass  # heartbeat
            self._changed.clear()
            if self.clients:
                self.seq += 1
                payloads: dict[tuple[str, str], str] = {}  # encoded once per scope, shared
                now = time.monotonic()
                for c in self.clients:
                    if c.sending_since and now - c.sending_since > SEND_TIMEOUT_S and c.sender is not None:
                        c.sender.cancel()  # stuck: its serve() ends and the server closes the socket
                        continue
                    key = _scope_key(c.viewer)
                    if key not in payloads:
                        payloads[key] = self._encode(c.viewer)
                    c.frame = payloads[key]  # coalesce: a slow client only ever has the newest frame waiting
                    c.ready.set()
                self._shared = {key: (now, payload) for key, payload in payloads.items()}
            await asyncio.sleep(self.frame_interval_s)  # coalescing window for the next changes

    # -- one websocket ----------------------------------------------------------------
    async def serve(self, ws: WebSocket, viewer: Principal | None = None) -> None:
        await ws.accept()
        client = _Client(ws, viewer, frame=self._newest(viewer))
        client.ready.set()
        self.clients.add(client)

        async def sender() -> None:
            while True:
                await client.ready.wait()
                client.ready.clear()
                payload, client.frame = client.frame, None
                if payload is not None:  # no timer per send: _frames drops a client stuck in one
                    client.sending_since = time.monotonic()
                    await ws.send_text(payload)
                    client.sending_since = 0.0

        async def receiver() -> None:
            while True:
                msg = await ws.receive_json()
                if isinstance(msg, dict) and msg.get("type") == "snapshot":
                    self.seq += 1  # a fresh encoding, so a number of its own
                    client.frame = self._encode(viewer)
                    client.ready.set()

        client.sender = asyncio.create_task(sender())
        tasks = [client.sender, asyncio.create_task(receiver())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (WebSocketDisconnect, asyncio.TimeoutError):
            pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.clients.discard(client)
