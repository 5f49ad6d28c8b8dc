"""The wire formats: committed JSON Schemas == the msgspec structs; docs/wire-formats.md is true.

Example blocks in the markdown are fenced as ```json <tag>; a tag naming a topic
(telemetry.v1, lifecycle.v1, deadletter.v1) must validate against that topic's schema and
decode with its msgspec decoder; an ``http-request`` is a telemetry.v1 batch without
provider_id whose schema-invalid samples are the ones its ``http-response`` lists as rejected;
every other ```json block must at least be JSON.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, get_args

import jsonschema
import msgspec
import pytest

from opscenter import wire, wire_incidents
from opscenter.inventory import _ALLOWED, SUPERVISED_STATES
from opscenter.schemas import dumps, json_schemas, schema_path, write_schemas

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "wire-formats.md"
SCHEMA_DIR = ROOT / "docs" / "schemas"
TOPICS = (wire.TOPIC_TELEMETRY, wire.TOPIC_LIFECYCLE, wire.TOPIC_DEADLETTER, wire.TOPIC_INCIDENTS)
DECODERS = {
    wire.TOPIC_TELEMETRY: wire.telemetry_decoder,
    wire.TOPIC_LIFECYCLE: wire.lifecycle_decoder,
    wire.TOPIC_DEADLETTER: wire.deadletter_decoder,
    wire.TOPIC_INCIDENTS: wire_incidents.incident_decoder,
}
REGENERATE = "run `python -m opscenter.schemas` and commit docs/schemas/"

_FENCE = re.compile(r"^```json[ \t]*(?P<tag>[^\s`]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def json_blocks() -> list[tuple[str, int, str]]:
    """(tag, line number, body) of every ```json block of the document."""
    text = doc_text()
    return [
        (m["tag"], text.count("\n", 0, m.start()) + 1, m["body"]) for m in _FENCE.finditer(text)
    ]


def validator(topic: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        json_schemas()[topic], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


# -- the committed schemas ----------------------------------------------------------------


def test_schemas_cover_the_topics_and_are_valid_draft_2020_12() -> None:
    schemas = json_schemas()
    assert set(schemas) == set(TOPICS)
    for topic, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith(topic) and schema["title"] and schema["description"]


@pytest.mark.parametrize("topic", TOPICS)
def test_committed_schema_is_generated(topic: str) -> None:
    path = schema_path(SCHEMA_DIR, topic)
    assert path.exists(), f"{path} is missing: {REGENERATE}"
    assert path.read_text(encoding="utf-8") == dumps(json_schemas()[topic]), (
        f"{path.relative_to(ROOT)} differs from opscenter.wire: {REGENERATE}"
    )


def test_no_stray_schema_files() -> None:
    committed = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert committed == {schema_path(SCHEMA_DIR, t).name for t in TOPICS}, REGENERATE


def test_write_schemas_writes_what_is_committed(tmp_path: Path) -> None:
    paths = write_schemas(tmp_path)
    assert sorted(p.name for p in paths) == sorted(p.name for p in SCHEMA_DIR.glob("*.json"))
    for p in paths:
        text = p.read_text(encoding="utf-8")
        topic = p.name.removesuffix(".schema.json")
        assert text.endswith("}\n") and json.loads(text) == json_schemas()[topic]


def _properties(schema: dict) -> list[tuple[str, str, dict]]:
    return [(d, f, p) for d, defn in schema["$defs"].items() for f, p in defn["properties"].items()]


@pytest.mark.parametrize("topic", TOPICS)
def test_every_field_is_described(topic: str) -> None:
    schema = json_schemas()[topic]
    for d, defn in schema["$defs"].items():
        assert defn.get("description"), d
    missing = [f"{d}.{f}" for d, f, p in _properties(schema) if not p.get("description")]
    assert not missing, f"describe these fields in opscenter/schemas.py: {missing}"


def test_enriched_constraints() -> None:
    schemas = json_schemas()
    sample = schemas[wire.TOPIC_TELEMETRY]["$defs"]["Sample"]["properties"]
    for f in ("cpu_pct", "mem_pct", "storage_pct"):
        assert (sample[f]["minimum"], sample[f]["maximum"]) == (0, 100)
    for f in ("net_rx_kbps", "net_tx_kbps"):
        assert {"type": "number", "minimum": 0} in sample[f]["anyOf"]
    life = schemas[wire.TOPIC_LIFECYCLE]["$defs"]["LifecycleEvent"]["properties"]
    assert life["type"]["enum"] == list(get_args(wire.LifecycleType))
    dead = schemas[wire.TOPIC_DEADLETTER]["$defs"]["DeadLetter"]["properties"]
    assert dead["reason"]["enum"] == list(wire.REASONS)
    incident = schemas[wire.TOPIC_INCIDENTS]["$defs"]["IncidentEvent"]["properties"]
    assert incident["type"]["enum"] == list(wire_incidents.INCIDENT_TYPES)
    for ts in (sample["ts"], life["ts"], dead["ingest_ts"], incident["ts"]):
        assert ts["format"] == "date-time" and "time zone" in ts["description"]


# -- the examples of the document ------------------------------------------------------------


def test_document_has_examples_of_every_topic() -> None:
    tags = [t for t, _, _ in json_blocks()]
    for topic in TOPICS:
        assert topic in tags, f"no ```json {topic} example in {DOC.name}"
    assert "http-request" in tags and "http-response" in tags
    untagged = [line for t, line, _ in json_blocks() if not t]
    assert not untagged, f"```json blocks without a tag at lines {untagged}"


@pytest.mark.parametrize("topic", TOPICS)
def test_examples_validate_and_decode(topic: str) -> None:
    v = validator(topic)
    blocks = [(line, body) for t, line, body in json_blocks() if t == topic]
    assert blocks
    for line, body in blocks:
        doc = json.loads(body)
        errors = [e.message for e in v.iter_errors(doc)]
        assert not errors, f"{DOC.name}:{line}: {errors}"
        DECODERS[topic].decode(body.encode())  # raises if msgspec disagrees


def test_http_examples_are_telemetry_without_provider() -> None:
    """An http-request is a telemetry.v1 batch without provider_id; the samples the schema
    refuses are exactly those its http-response lists as rejected."""
    v = validator(wire.TOPIC_TELEMETRY)
    blocks = json_blocks()
    pairs = [
        (line, body, next((b for t2, _, b in blocks[i + 1 :] if t2 == "http-response"), None))
        for i, (t, line, body) in enumerate(blocks)
        if t == "http-request"
    ]
    assert pairs
    for line, body, response in pairs:
        assert response is not None, f"{DOC.name}:{line}: http-request without an http-response"
        doc, answer = json.loads(body), json.loads(response)
        assert doc.get("provider_id") is None, "the HTTP example should omit provider_id"
        doc["provider_id"] = "p-haiyun"
        refused = set()
        for e in v.iter_errors(doc):
            path = list(e.absolute_path)
            assert path[:1] == ["samples"] and len(path) >= 2, f"{DOC.name}:{line}: {e.message}"
            refused.add(path[1])
        rejected = {r["index"] for r in answer["rejected"]}
        assert refused <= rejected, f"{DOC.name}:{line}: samples {refused - rejected} not rejected"
        assert answer["batch_id"] == doc["batch_id"]
        assert answer["accepted"] == len(doc["samples"]) - len(rejected)
        good = dict(doc, samples=[x for i, x in enumerate(doc["samples"]) if i not in rejected])
        wire.telemetry_decoder.decode(json.dumps(good).encode())
        assert v.is_valid(good)


def test_every_json_block_is_json() -> None:
    for _, line, body in json_blocks():
        try:
            json.loads(body)
        except json.JSONDecodeError as exc:
            pytest.fail(f"{DOC.name}:{line}: {exc}")


def test_deadletter_examples_carry_real_payloads() -> None:
    """A telemetry dead letter's payload is a sample or a message; 'base64:' for non-UTF-8."""
    for t, line, body in json_blocks():
        if t != wire.TOPIC_DEADLETTER:
            continue
        d = wire.deadletter_decoder.decode(body.encode())
        if d.payload.startswith("base64:"):
            continue
        payload = d.payload.encode()
        decoders = (wire.lifecycle_decoder,) if d.source.topic == wire.TOPIC_LIFECYCLE else (
            msgspec.json.Decoder(wire.Sample), wire.telemetry_decoder
        )
        ok = False
        for dec in decoders:
            try:
                dec.decode(payload)
                ok = True
            except msgspec.ValidationError:
                pass
        assert ok, f"{DOC.name}:{line}: payload is not a {d.source.topic} input"


# -- invalid documents are refused by the schemas ----------------------------------------------

GOOD_BATCH = {
    "provider_id": "p1",
    "batch_id": "b1",
    "samples": [
        {"resource_id": "r1", "ts": "2026-11-24T08:00:00Z", "cpu_pct": 10, "mem_pct": 20,
         "storage_pct": 30, "net_rx_kbps": 1.5, "net_tx_kbps": None},
    ],
}  # fmt: skip
GOOD_EVENT = {
    "event_id": "e1", "resource_id": "r1", "type": "delivered", "ts": "2026-11-24T16:00:00+08:00",
    "provider_id": "p1", "spec": {"vcpu": 4, "mem_gb": 8, "storage_gb": 100},
}  # fmt: skip
GOOD_LETTER = {
    "reason": "schema", "detail": "x", "provider_id": "p1", "payload": "{}",
    "source": {"topic": "telemetry.v1", "partition": 0, "offset": 7},
    "ingest_ts": "2026-11-24T08:00:00.125000Z",
}  # fmt: skip


S = ("samples", 0)
_DELETE = object()
GOOD_INCIDENT = {
    "event_id": "e1", "incident_id": "inc-1", "type": "opened", "ts": "2026-10-01T10:00:00+08:00",
    "provider_id": "p1", "severity": "P1", "resource_ids": ["r1"], "drill": False, "text": "数据库不可用",
}  # fmt: skip
_GOOD = {wire.TOPIC_TELEMETRY: GOOD_BATCH, wire.TOPIC_LIFECYCLE: GOOD_EVENT,
         wire.TOPIC_DEADLETTER: GOOD_LETTER, wire.TOPIC_INCIDENTS: GOOD_INCIDENT}  # fmt: skip
# (test id, topic, path of the changed field, new value or _DELETE)
INVALID = [
    ("cpu_pct 130", wire.TOPIC_TELEMETRY, (*S, "cpu_pct"), 130),
    ("mem_pct < 0", wire.TOPIC_TELEMETRY, (*S, "mem_pct"), -0.5),
    ("storage_pct > 100", wire.TOPIC_TELEMETRY, (*S, "storage_pct"), 100.01),
    ("net rate < 0", wire.TOPIC_TELEMETRY, (*S, "net_tx_kbps"), -1),
    ("missing resource_id", wire.TOPIC_TELEMETRY, (*S, "resource_id"), _DELETE),
    ("ts without zone", wire.TOPIC_TELEMETRY, (*S, "ts"), "2026-11-24T08:00:00"),
    ("ts not a time", wire.TOPIC_TELEMETRY, (*S, "ts"), "yesterday"),
    ("missing batch_id", wire.TOPIC_TELEMETRY, ("batch_id",), _DELETE),
    ("samples not a list", wire.TOPIC_TELEMETRY, ("samples",), {}),
    ("bad lifecycle type", wire.TOPIC_LIFECYCLE, ("type",), "installed"),
    ("vcpu a string", wire.TOPIC_LIFECYCLE, ("spec", "vcpu"), "4"),
    ("missing provider_id", wire.TOPIC_LIFECYCLE, ("provider_id",), _DELETE),
    ("resource_class upper case", wire.TOPIC_LIFECYCLE, ("resource_class",), "GPU"),
    ("resource_class too long", wire.TOPIC_LIFECYCLE, ("resource_class",), "c" * 41),
    ("unknown reason", wire.TOPIC_DEADLETTER, ("reason",), "bored"),
    ("detail > 500", wire.TOPIC_DEADLETTER, ("detail",), "x" * 501),
    ("negative offset", wire.TOPIC_DEADLETTER, ("source", "offset"), -1),
    ("incident type unknown", wire.TOPIC_INCIDENTS, ("type",), "escalated"),
    ("severity P5", wire.TOPIC_INCIDENTS, ("severity",), "P5"),
    ("incident ts without zone", wire.TOPIC_INCIDENTS, ("ts",), "2026-10-01T10:00:00"),
    ("empty incident_id", wire.TOPIC_INCIDENTS, ("incident_id",), ""),
    ("missing event_id", wire.TOPIC_INCIDENTS, ("event_id",), _DELETE),
    ("text > 4000", wire.TOPIC_INCIDENTS, ("text",), "x" * 4001),
    ("drill a string", wire.TOPIC_INCIDENTS, ("drill",), "yes"),
]


def _with(doc: dict, path: tuple, value: Any) -> dict:
    out = copy.deepcopy(doc)
    target = out
    for k in path[:-1]:
        target = target[k]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


@pytest.mark.parametrize("topic", TOPICS)
def test_good_documents_pass(topic: str) -> None:
    validator(topic).validate(_GOOD[topic])
    DECODERS[topic].decode(json.dumps(_GOOD[topic]).encode())


@pytest.mark.parametrize("topic, path, value", [pytest.param(*x[1:], id=x[0]) for x in INVALID])
def test_invalid_documents_fail(topic: str, path: tuple, value: Any) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validator(topic).validate(_with(_GOOD[topic], path, value))


def test_schema_agrees_with_the_code_on_zone_less_timestamps() -> None:
    """The schema refuses a ts without zone; the telemetry stage rejects it as 'schema'."""
    from datetime import datetime, timezone

    from opscenter.inventory import Registry, Resource
    from streams.validation import validate_batch

    now = datetime(2026, 11, 24, 8, 1, tzinfo=timezone.utc)
    reg = Registry({"r1": Resource("r1", "p1", "u", "d", "r1", 1, 1, 1, "delivered", 60, now)})
    for ts, ok in (("2026-11-24T08:00:00Z", True), ("2026-11-24T16:00:00+08:00", True),
                   ("2026-11-24T08:00:00", False)):  # fmt: skip
        doc = _with(GOOD_BATCH, (*S, "ts"), ts)
        assert validator(wire.TOPIC_TELEMETRY).is_valid(doc) is ok, ts
        v = validate_batch(json.dumps(doc).encode(), reg, int(now.timestamp() * 1000))
        assert [r.reason for r in v.rejects] == ([] if ok else ["schema"]), ts


# -- the prose of the document -----------------------------------------------------------------


@pytest.mark.parametrize("reason", wire.REASONS)
def test_every_reason_is_documented(reason: str) -> None:
    rows = [ln for ln in doc_text().splitlines() if ln.startswith(f"| `{reason}` |")]
    assert rows, f"dead-letter reason {reason!r} has no row in the reasons table of {DOC.name}"


def test_documented_reasons_exist() -> None:
    text = doc_text()
    start = text.index("| reason | topic | meaning | payload |")
    table = text[start : text.index("\n\n", start)]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, re.M)
    assert documented == list(wire.REASONS)


def test_lifecycle_table_matches_the_state_machine() -> None:
    text = doc_text()
    table = text[text.index("<!-- lifecycle-table") : text.index("<!-- /lifecycle-table -->")]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| state")]
    found: dict[str | None, tuple[frozenset[str], bool]] = {}
    for row in rows:
        state_cell, next_cell, accepts = (c.strip() for c in row.strip("|").split("|"))
        m = re.fullmatch(r"`([a-z_]+)`", state_cell)
        state = m[1] if m else None
        found[state] = (frozenset(re.findall(r"`([a-z_]+)`", next_cell)), accepts == "yes")
    expected = {s: (nxt, s in SUPERVISED_STATES) for s, nxt in _ALLOWED.items()}
    assert found == expected


def test_other_topics_are_mentioned() -> None:
    text = doc_text()
    for topic in (wire.TOPIC_INCIDENTS, wire.TOPIC_DECLARATIONS, wire.TOPIC_EVENTS):
        assert f"`{topic}`" in text


def test_schema_files_are_linked() -> None:
    text = doc_text()
    for topic in TOPICS:
        assert f"(schemas/{topic}.schema.json)" in text


def test_incident_examples_of_the_sla_document_validate_and_decode() -> None:
    """docs/sla.md documents incidents.v1 in full; its examples obey the schema and the decoder."""
    text = (ROOT / "docs" / "sla.md").read_text(encoding="utf-8")
    blocks = [(text.count("\n", 0, m.start()) + 1, m["body"]) for m in _FENCE.finditer(text)
              if m["tag"] == wire.TOPIC_INCIDENTS]  # fmt: skip
    assert blocks
    v = validator(wire.TOPIC_INCIDENTS)
    for line, body in blocks:
        errors = [e.message for e in v.iter_errors(json.loads(body))]
        assert not errors, f"sla.md:{line}: {errors}"
        wire_incidents.incident_decoder.decode(body.encode())


def test_incident_schema_agrees_with_the_decoder_on_zone_less_timestamps() -> None:
    doc = _with(GOOD_INCIDENT, ("ts",), "2026-10-01T10:00:00")
    assert not validator(wire.TOPIC_INCIDENTS).is_valid(doc)
    with pytest.raises(msgspec.ValidationError):
        wire_incidents.incident_decoder.decode(json.dumps(doc).encode())
