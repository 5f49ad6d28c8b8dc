"""Alert state in Redis (entry by entry, so a change writes only what changed) and its ClickHouse log.

Keys (prefix ``opscenter:alerts:``; values are JSON of the pure dataclasses):
  rules / alerts / groups / silences / periods   hashes: id → entry
  meta          hash: announced_period
  version       int, bumped by every write (a process reloads when it is not its own)
  lock          the writers' lock (one writer at a time, across workers and web processes)
  timers        sorted set: member → due epoch ms (holds, groups, repeats, escalations, silences)
  seen:<id>     an event already applied (redeliveries after a crash are skipped), 7-day TTL
  outbox        hash: notice id → notice JSON, deleted once every target was delivered or given up
  transitions   list of transition JSON waiting for ClickHouse
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from alerts.assurance import AssurancePeriod
from alerts.engine import EngineState
from alerts.grouping import PendingGroup
from alerts.rules import Entry
from alerts.silences import Silence
from alerts.state import Alert, Transition

PREFIX = "opscenter:alerts:"
CHANNEL = "opscenter:alerts"
VERSION, LOCK, TIMERS, OUTBOX, TRANSITIONS, META = (PREFIX + k for k in
    ("version", "lock", "timers", "outbox", "transitions", "meta"))  # fmt: skip
CONTROL_CHANNEL = PREFIX + "control"  # {"reload": true}: every process re-reads the rule file
SEEN_TTL_S = 7 * 86400
SECTIONS: dict[str, type] = {"rules": Entry, "alerts": Alert, "groups": PendingGroup, "silences": Silence,
                             "periods": AssurancePeriod}  # fmt: skip
_encoder = msgspec.json.Encoder()
_decoders = {name: msgspec.json.Decoder(t) for name, t in SECTIONS.items()}


def encode(obj: Any) -> bytes:
    """JSON of a dataclass (or any msgspec-encodable value)."""
    return _encoder.encode(obj)


async def load(redis: Redis) -> tuple[EngineState, int]:
    """The whole engine state and its version."""
    pipe = redis.pipeline(transaction=True)
    pipe.get(VERSION)
    for name in SECTIONS:
        pipe.hgetall(PREFIX + name)
    pipe.hget(META, "announced_period")
    res = await pipe.execute()
    version = int(res[0] or 0)
    parts: dict[str, Any] = {}
    for (name, _), raw in zip(SECTIONS.items(), res[1:-1]):
        dec = _decoders[name]
        parts[name] = {k.decode(): dec.decode(v) for k, v in raw.items()}
    announced = (res[-1] or b"").decode()
    return EngineState(announced_period=announced, **parts), version


def write_diff(pipe: Pipeline, old: EngineState, new: EngineState) -> int:
    """Queue the writes that turn ``old`` into ``new`` (unchanged entries are the same objects)."""
    n = 0
    for name in SECTIONS:
        a: Mapping[str, Any] = getattr(old, name)
        b: Mapping[str, Any] = getattr(new, name)
        if a is b:
            continue
        put = {k: encode(v) for k, v in b.items() if a.get(k) is not v}
        gone = [k for k in a if k not in b]
        if put:
            pipe.hset(PREFIX + name, mapping=put)
        if gone:
            pipe.hdel(PREFIX + name, *gone)
        n += len(put) + len(gone)
    if old.announced_period != new.announced_period:
        pipe.hset(META, "announced_period", new.announced_period)
        n += 1
    return n


def transition_row(t: Transition) -> list[Any]:
    """A transition as a row of ``alert_transitions`` (columns: TRANSITION_COLUMNS)."""
    from datetime import datetime

    lb = dict(t.labels)
    return [t.alert_id, t.fingerprint, t.rule, t.seq, t.from_state, t.to_state,
            datetime.fromtimestamp(t.at_ms / 1000, tz=UTC), t.actor, t.reason, t.severity,
            lb.get("provider", ""), lb.get("unit", ""), lb.get("district", ""), lb.get("resource", ""),
            lb.get("subject", ""), lb, t.summary_zh, t.summary_en]  # fmt: skip


TRANSITION_COLUMNS = ("alert_id", "fingerprint", "rule", "seq", "from_state", "to_state", "at", "actor", "reason",
                      "severity", "provider_id", "unit_id", "district_id", "resource_id", "subject", "labels",
                      "summary_zh", "summary_en")  # fmt: skip
_transition_decoder = msgspec.json.Decoder(Transition)


def decode_transition(raw: bytes) -> Transition:
    """A transition from its JSON in the Redis list."""
    return _transition_decoder.decode(raw)


def open_alerts_from_rows(rows: list[dict[str, Any]]) -> dict[str, Alert]:
    """Rebuild open alerts from the latest ClickHouse transition of each (when Redis lost its state)."""
    out: dict[str, Alert] = {}
    for r in rows:
        if r["l_state"] not in ("firing", "acknowledged"):
            continue
        labels = dict(r["l_labels"])
        a = Alert(r["l_fingerprint"], r["alert_id"], r["l_rule"], labels, r["l_severity"], r["l_state"],
                  int(r["l_started_ms"]), int(r["l_at_ms"]), "", 3600.0, r["l_summary_zh"], r["l_summary_en"],
                  seq=int(r["l_seq"]), notified_ms=int(r["l_at_ms"]))  # fmt: skip
        if r["l_state"] == "acknowledged":
            a = replace(a, ack_by=r["l_actor"], ack_ms=int(r["l_at_ms"]), ack_comment=r["l_reason"])
        out[a.fingerprint] = a
    return out
