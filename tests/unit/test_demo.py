"""The demo city: deterministic, consistent, Weihai's real districts, fictional providers."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from opscenter.demo import City, city, lifecycle_events
from opscenter.wire import json_encoder, lifecycle_decoder

DISTRICTS = {
    "d-huancui": "环翠区",
    "d-wendeng": "文登区",
    "d-rongcheng": "荣成市",
    "d-rushan": "乳山市",
    "d-torch": "火炬高技术产业开发区",
    "d-etdz": "经济技术开发区",
    "d-lingang": "临港经济技术开发区",
    "d-ftz": "综合保税区",
}


def test_same_seed_same_city_other_seed_differs() -> None:
    assert city() == city()
    assert city(50, seed=7) == city(50, seed=7)
    assert city(50, seed=7).resources != city(50, seed=8).resources


def test_smaller_city_is_a_prefix_of_a_larger_one() -> None:
    assert city(40).resources == city(300).resources[:40]


def test_eight_districts_with_exact_names() -> None:
    c = city()
    assert {d.org_id: d.name_zh for d in c.districts} == DISTRICTS
    assert all(d.kind == "district" and d.name_en for d in c.districts)


def test_units_belong_to_known_districts() -> None:
    c = city()
    ids = {d.org_id for d in c.districts}
    assert all(u.kind == "unit" and u.parent in ids for u in c.units)
    names = {u.org_id: u.name_zh for u in c.units}
    assert names["u-dsj"] == "市大数据局" and names["u-gaj"] == "市公安局"
    assert names["u-rsj"] == "市人社局" and names["u-wjw"] == "市卫健委"
    assert names["u-jyj"] == "市教育局" and names["u-ybj"] == "市医保局"
    assert len({u.org_id for u in c.units}) == len(c.units)
    municipal = [u for u in c.units if u.name_zh.startswith("市")]
    assert len(municipal) >= 12
    parents = Counter(u.parent for u in municipal)
    assert parents.most_common(1)[0][0] == "d-huancui" and len(parents) > 1
    # every district other than 环翠区 has its own units
    assert {u.parent for u in c.units if not u.name_zh.startswith("市")} == ids - {"d-huancui"}


def test_fictional_providers_and_demo_tokens() -> None:
    c = city()
    assert {p.org_id: p.name_zh for p in c.providers} == {
        "p-haiyun": "海韵云", "p-donghai": "东海数智", "p-jinqiao": "金桥云服务"}  # fmt: skip
    assert c.provider_tokens == {p.org_id: "demo-" + p.org_id for p in c.providers}


def test_resources_are_consistent_and_realistic() -> None:
    c: City = city()
    assert len(c.resources) == 300
    assert [r.resource_id for r in c.resources] == [f"r-{i:05d}" for i in range(1, 301)]
    units = {u.org_id: u for u in c.units}
    providers = {p.org_id for p in c.providers}
    for r in c.resources:
        assert r.provider_id in providers
        assert r.unit_id in units and r.district_id == units[r.unit_id].parent
        assert r.name.startswith(units[r.unit_id].name_zh + "-")
        assert r.name.rsplit("-", 1)[1].isdigit()
        assert r.vcpu in {2, 4, 8, 16, 32}
        assert r.mem_gb in {r.vcpu * k for k in (2, 4, 8)}
        assert r.storage_gb in {100, 200, 500, 1000, 2000}
        assert r.interval_s in {15, 30, 60}
        assert r.profile in {"normal", "idle", "overloaded", "flaky"}
    assert len({r.name for r in c.resources}) == len(c.resources)
    profiles = Counter(r.profile for r in c.resources)
    assert profiles["normal"] > 0.7 * 300
    assert all(profiles[p] >= 5 for p in ("idle", "overloaded", "flaky"))
    intervals = Counter(r.interval_s for r in c.resources)
    assert intervals[15] > 0.7 * 300 and intervals[30] > 0 and intervals[60] > 0


def test_fixed_profiles_of_the_first_resources() -> None:
    for c in (city(), city(3)):
        by_id = {r.resource_id: r for r in c.resources}
        assert by_id["r-00001"].profile == "idle"
        assert by_id["r-00002"].profile == "idle"
        assert by_id["r-00003"].profile == "overloaded"


def test_lifecycle_events_round_trip() -> None:
    c = city(30)
    ts = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)
    events = lifecycle_events(c, ts)
    assert len(events) == 30
    for ev, r in zip(events, c.resources, strict=True):
        back = lifecycle_decoder.decode(json_encoder.encode(ev))
        assert back == ev
        assert back.type == "delivered" and back.event_id == "demo-delivered-" + r.resource_id
        assert back.ts == ts and back.provider_id == r.provider_id
        assert (back.unit_id, back.district_id, back.name) == (r.unit_id, r.district_id, r.name)
        assert back.spec is not None
        assert (back.spec.vcpu, back.spec.mem_gb, back.spec.storage_gb) == (
            r.vcpu, r.mem_gb, r.storage_gb)  # fmt: skip
        assert back.interval_s == r.interval_s
