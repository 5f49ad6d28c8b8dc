"""Resource classes (§6) against real chDB: lifecycle.v1 names a class, the registry stage keeps it in the
inventory and the event log, and the assessment prices every day by the class in force that day."""

from __future__ import annotations

from datetime import date

from opscenter.wire import TOPIC_DEADLETTER, TOPIC_LIFECYCLE
from streams.ingest import Message
from streams.registry import load_registry
from tests.integration.helpers import consume_all
from tests.integration.test_assessment import auth, env, post_ok, seed_rollups

__all__ = ["env"]


def event(eid: str, rid: str, type_: str, ts: str, spec: dict | None = None, cls: str | None = None) -> bytes:
    """One lifecycle.v1 message as a provider sends it (``cls`` None: the field left out)."""
    import orjson

    doc = {"event_id": eid, "resource_id": rid, "type": type_, "ts": ts, "provider_id": "pC", "unit_id": "uC",
           "district_id": "dC", "spec": spec}  # fmt: skip
    if cls is not None:
        doc["resource_class"] = cls
    return orjson.dumps(doc)


async def test_each_day_is_priced_by_the_class_in_force(env) -> None:  # type: ignore[no-untyped-def]
    services, client = env
    spec = {"vcpu": 2, "mem_gb": 4, "storage_gb": 100}
    messages = [
        event("s1", "r-std", "delivered", "2025-01-05T10:00:00+08:00", spec),  # an old provider: no class at all
        event("g1", "r-gpu", "delivered", "2025-01-05T10:00:00+08:00", spec, "gpu"),
        event("m1", "r-mix", "delivered", "2025-02-01T10:00:00+08:00", {"vcpu": 1, "mem_gb": 2, "storage_gb": 0}),
        event("m2", "r-mix", "adjusted", "2025-03-11T09:00:00+08:00", None, "gpu"),  # class only, spec unchanged
        event("m3", "r-mix", "adjusted", "2025-03-21T09:00:00+08:00", {"vcpu": 2, "mem_gb": 2, "storage_gb": 0}),
        event("f1", "r-fpga", "delivered", "2025-01-05T10:00:00+08:00", spec, "fpga"),  # a class finance never priced
        event("x1", "r-bad", "delivered", "2025-01-05T10:00:00+08:00", spec, "GPU Large"),  # refused: schema
    ]
    await services.registry_stage.process([Message(0, i, m, TOPIC_LIFECYCLE) for i, m in enumerate(messages)])

    # the registry, the inventory and the event log keep the class; an event without one changes nothing
    assert {r: services.registry.get(r).resource_class for r in ("r-std", "r-gpu", "r-mix", "r-fpga")} == {
        "r-std": "standard", "r-gpu": "gpu", "r-mix": "gpu", "r-fpga": "fpga"}  # fmt: skip
    assert services.registry.get("r-bad") is None
    dead = await consume_all(services.settings, TOPIC_DEADLETTER, expect=1)
    assert [(d["reason"], d["source"]["offset"]) for d in dead] == [("schema", 6)]
    assert "resource_class" in dead[0]["detail"]
    inv = services.store.client.query("SELECT resource_id, resource_class FROM inventory FINAL ORDER BY resource_id")
    assert inv.result_rows == [("r-fpga", "fpga"), ("r-gpu", "gpu"), ("r-mix", "gpu"), ("r-std", "standard")]
    reloaded, _ = await load_registry(services.store)  # a restarted worker rebuilds its registry from the inventory
    assert (reloaded.get("r-mix").resource_class, reloaded.get("r-std").resource_class) == ("gpu", "standard")
    log = services.store.client.query("SELECT event_id, resource_class FROM lifecycle_events FINAL ORDER BY event_id")
    assert log.result_rows == [("f1", "fpga"), ("g1", "gpu"), ("m1", ""), ("m2", "gpu"), ("m3", ""), ("s1", "")]

    # price lists per class, from 2025-01-01 (entered now: corrections with a reason)
    for cls, vcpu in (("standard", "1.00"), ("gpu", "3.00")):
        await post_ok(client, "/api/v1/prices", "finance", {"resource_class": cls, "valid_from": "2025-01-01",
                      "vcpu_day": vcpu, "mem_gb_day": "0.50", "storage_gb_day": "0.01", "correction": True,
                      "reason": f"{cls} 类别计费标准"})  # fmt: skip
    for rid in ("r-std", "r-gpu", "r-mix", "r-fpga"):
        seed_rollups(services, "pC", rid, date(2025, 3, 1), 31)  # every day of March supervised

    r = await client.get("/api/v1/assessments?provider=pC&from=2025-03-01&to=2025-03-31", headers=auth("bureau"))
    assert r.status_code == 200, r.text
    a = r.json()
    got = [(x["resource_id"], x["resource_class"], x["status"], x["first_day"], x["days"], x["day_rate"], x["amount"])
           for x in a["lines"] + a["exclusions"]]  # fmt: skip
    # day rate = vcpu × class vcpu price + mem × 0.50 + storage × 0.01
    assert got == [
        ("r-gpu", "gpu", "billable", "2025-03-01", 31, "9.0000", "279.00"),  # 2 × 3 + 4 × 0.5 + 100 × 0.01 = 9
        # r-mix: standard 1/2/0 → 1 + 1 = 2; gpu from 03-11 → 3 + 1 = 4; spec 2/2/0 from 03-21, still gpu → 6 + 1 = 7
        ("r-mix", "standard", "billable", "2025-03-01", 10, "2.0000", "20.00"),
        ("r-mix", "gpu", "billable", "2025-03-11", 10, "4.0000", "40.00"),
        ("r-mix", "gpu", "billable", "2025-03-21", 11, "7.0000", "77.00"),
        ("r-std", "standard", "billable", "2025-03-01", 31, "5.0000", "155.00"),  # 2 + 2 + 1 = 5
        ("r-fpga", "fpga", "no_price", "2025-03-01", 31, "0", "0.00"),  # no price list for its class
    ]
    assert a["totals"]["billable"] == "571.00"  # 279 + 20 + 40 + 77 + 155

    # the CSV names the class of every line too
    csv_text = (await client.get("/api/v1/assessments?provider=pC&from=2025-03-01&to=2025-03-31&format=csv",
                                 headers=auth("finance"))).text  # fmt: skip
    header = csv_text.lstrip("\ufeff").splitlines()[0].split(",")
    rows = [line.split(",") for line in csv_text.splitlines()[1:] if line.startswith("line,")]
    assert [row[header.index("resource_class")] for row in rows] == ["gpu", "standard", "gpu", "gpu", "standard"]
