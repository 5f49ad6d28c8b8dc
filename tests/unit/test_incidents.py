"""incidents.v1 and the incident state machine: valid lifecycles, rejects with reasons, redeliveries."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from opscenter import wire
from opscenter.wire_incidents import IncidentEvent, encode, fingerprint, incident_decoder
from streams.incidents import ALLOWED, CODES, Applied, Duplicate, Incident, Invalid, apply, apply_all

T0 = datetime(2026, 10, 1, 2, 0, tzinfo=timezone.utc)
NOW_MS = int((T0 + timedelta(days=1)).timestamp() * 1000)


def ev(type_: str, minute: float = 0, *, eid: str | None = None, inc: str = "i1", provider: str = "p1",
       **kw: object) -> IncidentEvent:  # fmt: skip
    return IncidentEvent(eid or f"{inc}-{type_}-{minute}", inc, type_, T0 + timedelta(minutes=minute),  # type: ignore[arg-type]
                         provider, **kw)  # type: ignore[arg-type]  # fmt: skip


def run(*events: IncidentEvent) -> Incident:
    incident: Incident | None = None
    for e in events:
        out = apply(incident, e, NOW_MS)
        assert isinstance(out, Applied), out
        incident = out.incident
    assert incident is not None
    return incident


def test_full_lifecycle_records_the_milestones() -> None:
    inc = run(
        ev("opened", 0, severity="P1", resource_ids=["r1"], text="数据库不可用"),
        ev("acknowledged", 14),
        ev("updated", 20, severity="P2", resource_ids=["r1", "r2"]),
        ev("resolved", 90),
        ev("closed", 120),
    )
    t0 = int(T0.timestamp() * 1000)
    assert (inc.state, inc.severity, inc.resource_ids, inc.text) == ("closed", "P2", ["r1", "r2"], "数据库不可用")
    assert (inc.opened_ms, inc.acknowledged_ms, inc.resolved_ms, inc.closed_ms) == (
        t0, t0 + 14 * 60_000, t0 + 90 * 60_000, t0 + 120 * 60_000)  # fmt: skip
    assert inc.version == 5 and not inc.drill


def test_resolve_without_acknowledge_is_allowed() -> None:
    inc = run(ev("opened", 0, severity="P3"), ev("resolved", 5))
    assert inc.state == "resolved" and inc.acknowledged_ms is None


def test_drill_flag_is_taken_from_the_opening_only() -> None:
    inc = run(ev("opened", 0, severity="P1", drill=True), ev("acknowledged", 1, drill=False))
    assert inc.drill


@pytest.mark.parametrize(
    "history, event, code",
    [
        ([], ev("resolved", 5), "not_opened"),
        ([], ev("acknowledged", 5), "not_opened"),
        ([], ev("opened", 0), "missing_severity"),
        ([ev("opened", 0, severity="P1")], ev("opened", 1, severity="P2"), "already_opened"),
        ([ev("opened", 0, severity="P1")], ev("acknowledged", 1, provider="p2"), "foreign_incident"),
        ([ev("opened", 0, severity="P1")], ev("closed", 1), "bad_transition"),
        ([ev("opened", 0, severity="P1"), ev("acknowledged", 2)], ev("acknowledged", 3), "bad_transition"),
        ([ev("opened", 0, severity="P1"), ev("resolved", 2)], ev("acknowledged", 3), "bad_transition"),
        ([ev("opened", 0, severity="P1"), ev("resolved", 2), ev("closed", 3)], ev("updated", 4), "bad_transition"),
        ([ev("opened", 10, severity="P1")], ev("acknowledged", 5), "ts_before_previous"),
        ([ev("opened", 0, severity="P1"), ev("acknowledged", 10)], ev("resolved", 9), "ts_before_previous"),
        ([ev("opened", 0, severity="P1")], ev("acknowledged", 60 * 24 + 10), "future_timestamp"),
        ([ev("opened", 0, severity="P1")], ev("acknowledged", 3, eid="i1-opened-0"), "duplicate_event_id"),
    ],
)
def test_invalid_steps_are_rejected_with_a_code(history: list[IncidentEvent], event: IncidentEvent, code: str) -> None:
    incident = run(*history) if history else None
    out = apply(incident, event, NOW_MS)
    assert isinstance(out, Invalid) and out.code == code, out
    assert code in CODES and str(out).startswith(code + ": ")


def test_a_redelivery_changes_nothing() -> None:
    opened, ack = ev("opened", 0, severity="P1"), ev("acknowledged", 3)
    inc = run(opened, ack)
    for again in (opened, ack, incident_decoder.decode(encode(ack))):
        out = apply(inc, again, NOW_MS)
        assert isinstance(out, Duplicate) and out.incident is inc


def test_the_same_instant_in_another_zone_is_the_same_event() -> None:
    a = ev("opened", 0, severity="P1")
    b = msgspec.structs.replace(a, ts=a.ts.astimezone(timezone(timedelta(hours=8))))
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(msgspec.structs.replace(a, text="x"))


def test_apply_all_keeps_incidents_apart_and_collects_rejects() -> None:
    incidents, rejects = apply_all(
        [ev("opened", 0, severity="P1"), ev("opened", 0, inc="i2", severity="P4"), ev("resolved", 1, inc="i3"),
         ev("acknowledged", 2), ev("acknowledged", 2)],
        NOW_MS,
    )  # fmt: skip
    assert {k: v.state for k, v in incidents.items()} == {"i1": "acknowledged", "i2": "open"}
    assert [r.code for r in rejects] == ["not_opened"]


def test_every_state_is_in_the_transition_table() -> None:
    assert set(ALLOWED) == {None, "open", "acknowledged", "resolved", "closed"}


# -- the wire format -----------------------------------------------------------------------


def test_decodes_a_documented_event_and_ignores_unknown_fields() -> None:
    raw = (b'{"event_id":"e-1","incident_id":"inc-1","type":"opened","ts":"2026-10-01T10:00:00+08:00",'
           b'"provider_id":"p-haiyun","severity":"P1","resource_ids":["r-1"],"drill":false,'
           b'"text":"\xe6\x95\x85\xe9\x9a\x9c","extra":1}')  # fmt: skip
    e = incident_decoder.decode(raw)
    assert (e.type, e.severity, e.ts, e.text, e.v) == ("opened", "P1", T0, "故障", 1)


@pytest.mark.parametrize(
    "patch",
    [
        {"ts": "2026-10-01T10:00:00"},  # no zone
        {"type": "reopened"},
        {"severity": "P5"},
        {"event_id": ""},
        {"resource_ids": "r-1"},
    ],
)
def test_schema_violations_fail_to_decode(patch: dict[str, object]) -> None:
    doc = {"event_id": "e", "incident_id": "i", "type": "opened", "ts": "2026-10-01T02:00:00Z",
           "provider_id": "p", "severity": "P1"}  # fmt: skip
    doc.update(patch)
    with pytest.raises(msgspec.ValidationError):
        incident_decoder.decode(msgspec.json.encode(doc))


def test_invalid_incident_is_a_dead_letter_reason() -> None:
    assert "invalid_incident" in wire.REASONS


def test_a_resource_of_another_provider_is_refused_an_unknown_one_accepted() -> None:
    owners = {"r1": "p1", "r2": "p2"}
    out = apply(None, ev("opened", 0, severity="P1", resource_ids=["r1", "r2"]), NOW_MS, owner_of=owners.get)
    assert isinstance(out, Invalid) and out.code == "foreign_resource" and "r2" in out.detail
    out = apply(None, ev("opened", 0, severity="P1", resource_ids=["r1", "r9"]), NOW_MS, owner_of=owners.get)
    assert isinstance(out, Applied)


# -- docs/sla.md stays true ------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "sla.md"
_FENCE = re.compile(r"^```json[ \t]*(?P<tag>[^\s`]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


def _blocks(tag: str) -> list[str]:
    return [m["body"] for m in _FENCE.finditer(DOC.read_text(encoding="utf-8")) if m["tag"] == tag]


def test_documented_incident_examples_decode_and_apply() -> None:
    events = [incident_decoder.decode(b.encode()) for b in _blocks("incidents.v1")]
    assert len(events) >= 2
    incidents, rejects = apply_all(events, NOW_MS + 400 * 86_400_000)
    assert not rejects and [i.state for i in incidents.values()] == ["acknowledged"]


def test_documented_sla_event_is_what_the_timer_sends() -> None:
    from streams import sla
    from streams.deadlines import Due
    from streams.sla_agent import signal_event

    (doc,) = [wire.event_decoder.decode(b.encode()) for b in _blocks("events.v1")]
    opened = incident_decoder.decode(_blocks("incidents.v1")[0].encode())
    inc = sla.with_targets(apply_all([opened], NOW_MS + 400 * 86_400_000)[0][opened.incident_id], sla.load_targets())
    due_ms = inc.opened_ms + inc.response_target_ms
    sent = signal_event(inc, Due("", "inc", inc.incident_id, "response", "sla_breach", due_ms))
    assert sent == doc


def test_documented_http_example_is_an_event_without_provider() -> None:
    (request,) = _blocks("http-incident-request")
    doc = msgspec.json.decode(request.encode())
    assert "provider_id" not in doc
    msgspec.convert({**doc, "provider_id": "p-haiyun"}, IncidentEvent)
    assert msgspec.json.decode(_blocks("http-incident-response")[0].encode())["status"] == "accepted"


def test_documented_state_table_is_the_state_machine() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("<!-- incident-table") : text.index("<!-- /incident-table -->")]
    found: dict[str | None, frozenset[str]] = {}
    for row in table.splitlines():
        if not row.startswith("| ") or row.startswith("| state"):
            continue
        state_cell, next_cell = (c.strip() for c in row.strip("|").split("|"))
        m = re.fullmatch(r"`([a-z_]+)`", state_cell)
        found[m[1] if m else None] = frozenset(re.findall(r"`([a-z_]+)`", next_cell))
    assert found == ALLOWED


def test_every_reject_code_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert [c for c in CODES if f"| `{c}` |" not in text] == []
