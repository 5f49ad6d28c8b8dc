"""The demo city: Weihai's districts, municipal units, fictional providers and resources (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from opscenter.wire import LifecycleEvent, Spec

PROFILES = ("normal", "idle", "overloaded", "flaky")
#: share of each profile among generated resources (the first three ids are fixed, see ``city``)
PROFILE_WEIGHTS = (80, 8, 5, 7)
#: resources whose profile (and 15 s interval) is fixed for every seed (tests rely on them)
FIXED_PROFILES = {"r-00001": "idle", "r-00002": "idle", "r-00003": "overloaded"}

VCPU_CHOICES = (2, 4, 8, 16, 32)
VCPU_WEIGHTS = (20, 35, 25, 15, 5)
MEM_RATIOS = (2, 4, 8)
MEM_RATIO_WEIGHTS = (30, 50, 20)
STORAGE_CHOICES = (100, 200, 500, 1000, 2000)
STORAGE_WEIGHTS = (20, 30, 30, 15, 5)
INTERVAL_CHOICES = (15, 30, 60)
INTERVAL_WEIGHTS = (80, 12, 8)


@dataclass(frozen=True, slots=True)
class Org:
    """A provider, a district or a unit (``kind``); units name their district as ``parent``."""

    kind: str
    org_id: str
    name_zh: str
    name_en: str
    parent: str = ""


@dataclass(frozen=True, slots=True)
class DemoResource:
    """One cloud resource of the demo city with its spec, load profile and sampling interval."""

    resource_id: str
    provider_id: str
    unit_id: str
    district_id: str
    name: str
    vcpu: int
    mem_gb: int
    storage_gb: int
    profile: str
    interval_s: int


@dataclass(frozen=True, slots=True)
class City:
    """The whole demo city; ``provider_tokens`` are DEMO-ONLY bearer tokens (not for production)."""

    providers: list[Org]
    districts: list[Org]
    units: list[Org]
    resources: list[DemoResource]
    provider_tokens: dict[str, str]


_PROVIDERS = (
    Org("provider", "p-haiyun", "海韵云", "Haiyun Cloud"),
    Org("provider", "p-donghai", "东海数智", "Donghai Digital Intelligence"),
    Org("provider", "p-jinqiao", "金桥云服务", "Jinqiao Cloud Services"),
)
_PROVIDER_WEIGHTS = (45, 35, 20)

_DISTRICTS = (
    Org("district", "d-huancui", "环翠区", "Huancui District"),
    Org("district", "d-wendeng", "文登区", "Wendeng District"),
    Org("district", "d-rongcheng", "荣成市", "Rongcheng City"),
    Org("district", "d-rushan", "乳山市", "Rushan City"),
    Org("district", "d-torch", "火炬高技术产业开发区", "Torch Hi-tech Industrial Development Zone"),
    Org("district", "d-etdz", "经济技术开发区", "Economic and Technological Development Zone"),
    Org(
        "district",
        "d-lingang",
        "临港经济技术开发区",
        "Lingang Economic and Technological Development Zone",
    ),
    Org("district", "d-ftz", "综合保税区", "Comprehensive Bonded Zone"),
)

# (org, relative weight of resources, business systems it runs)
_GENERIC_SYSTEMS = ("政务服务", "办公OA", "门户网站", "数据库", "数据交换")
_UNITS: tuple[tuple[Org, int, tuple[str, ...]], ...] = (
    (Org("unit", "u-dsj", "市大数据局", "Municipal Big Data Bureau", "d-huancui"), 14,
     ("数据共享交换", "政务数据中台", "一网通办", "电子证照", "数据库")),
    (Org("unit", "u-gaj", "市公安局", "Municipal Public Security Bureau", "d-huancui"), 12,
     ("视频云", "警务综合平台", "人口信息库", "交管平台")),
    (Org("unit", "u-rsj", "市人社局", "Municipal Human Resources and Social Security Bureau",
         "d-huancui"), 8, ("社保经办", "就业服务", "人才服务", "数据库")),
    (Org("unit", "u-wjw", "市卫健委", "Municipal Health Commission", "d-huancui"), 8,
     ("全民健康信息平台", "疾控系统", "电子病历共享", "数据库")),
    (Org("unit", "u-jyj", "市教育局", "Municipal Education Bureau", "d-huancui"), 6,
     ("智慧教育", "招生平台", "学籍管理")),
    (Org("unit", "u-ybj", "市医保局", "Municipal Healthcare Security Bureau", "d-huancui"), 6,
     ("医保结算", "医保服务大厅", "数据库")),
    (Org("unit", "u-mzj", "市民政局", "Municipal Civil Affairs Bureau", "d-huancui"), 4,
     ("婚姻登记", "社会救助", "养老服务")),
    (Org("unit", "u-zrzy", "市自然资源和规划局",
         "Municipal Natural Resources and Planning Bureau", "d-huancui"), 5,
     ("不动产登记", "国土空间规划", "地理信息")),
    (Org("unit", "u-jtj", "市交通运输局", "Municipal Transport Bureau", "d-lingang"), 5,
     ("交通运行监测", "公交调度", "港航管理")),
    (Org("unit", "u-zjj", "市住建局", "Municipal Housing and Urban-Rural Development Bureau",
         "d-huancui"), 4, ("工程建设审批", "住房保障", "物业监管")),
    (Org("unit", "u-scjg", "市市场监管局", "Municipal Market Regulation Bureau", "d-torch"), 4,
     ("企业登记", "食品安全追溯", "信用监管")),
    (Org("unit", "u-sthj", "市生态环境局", "Municipal Ecology and Environment Bureau", "d-etdz"), 4,
     ("环境监测", "污染源监控", "海洋环境")),
    (Org("unit", "u-wendeng-dsj", "文登区大数据中心", "Wendeng District Big Data Center",
         "d-wendeng"), 3, ("区级政务云", "数据共享")),
    (Org("unit", "u-wendeng-gaj", "文登区公安分局", "Wendeng Public Security Branch",
         "d-wendeng"), 2, ("视频云", "警务综合平台")),
    (Org("unit", "u-rongcheng-dsj", "荣成市大数据中心", "Rongcheng Big Data Center",
         "d-rongcheng"), 3, ("城市大脑", "数据共享")),
    (Org("unit", "u-rongcheng-wjj", "荣成市卫健局", "Rongcheng Health Bureau", "d-rongcheng"), 2,
     ("基层医疗", "疫苗管理")),
    (Org("unit", "u-rushan-dsj", "乳山市大数据中心", "Rushan Big Data Center", "d-rushan"), 2,
     ("政务服务", "数据共享")),
    (Org("unit", "u-rushan-jtj", "乳山市教体局", "Rushan Education and Sports Bureau", "d-rushan"),
     2, ("智慧教育", "学籍管理")),
    (Org("unit", "u-torch-gwh", "火炬高新区管委会", "Torch Hi-tech Zone Administrative Committee",
         "d-torch"), 3, ("企业服务", "园区管理")),
    (Org("unit", "u-etdz-gwh", "经济技术开发区管委会",
         "Economic and Technological Development Zone Administrative Committee", "d-etdz"), 2,
     ("招商服务", "园区管理")),
    (Org("unit", "u-etdz-gaj", "经区公安分局", "ETDZ Public Security Branch", "d-etdz"), 2,
     ("视频云", "治安防控")),
    (Org("unit", "u-lingang-gwh", "临港区管委会", "Lingang Zone Administrative Committee",
         "d-lingang"), 2, ("园区管理", "安全生产监测")),
    (Org("unit", "u-ftz-gwh", "综保区管委会", "Comprehensive Bonded Zone Administrative Committee",
         "d-ftz"), 2, ("通关服务", "跨境电商平台")),
)  # fmt: skip


def city(n_resources: int = 300, seed: int = 42) -> City:
    """Build the demo city deterministically; a smaller city's resources prefix a larger one's."""
    rng = random.Random(seed)
    units = [u for u, _, _ in _UNITS]
    unit_weights = [w for _, w, _ in _UNITS]
    counters: dict[tuple[str, str], int] = {}
    resources: list[DemoResource] = []
    for i in range(1, n_resources + 1):
        rid = f"r-{i:05d}"
        k = rng.choices(range(len(_UNITS)), weights=unit_weights)[0]
        unit, _, systems = _UNITS[k]
        system = rng.choice(systems + _GENERIC_SYSTEMS[:2])
        provider = rng.choices(_PROVIDERS, weights=_PROVIDER_WEIGHTS)[0]
        vcpu = rng.choices(VCPU_CHOICES, weights=VCPU_WEIGHTS)[0]
        mem_gb = vcpu * rng.choices(MEM_RATIOS, weights=MEM_RATIO_WEIGHTS)[0]
        storage_gb = rng.choices(STORAGE_CHOICES, weights=STORAGE_WEIGHTS)[0]
        interval_s = rng.choices(INTERVAL_CHOICES, weights=INTERVAL_WEIGHTS)[0]
        profile = rng.choices(PROFILES, weights=PROFILE_WEIGHTS)[0]
        if rid in FIXED_PROFILES:
            profile = FIXED_PROFILES[rid]
            interval_s = 15
        n = counters[(unit.org_id, system)] = counters.get((unit.org_id, system), 0) + 1
        resources.append(
            DemoResource(
                resource_id=rid,
                provider_id=provider.org_id,
                unit_id=unit.org_id,
                district_id=unit.parent,
                name=f"{unit.name_zh}-{system}-{n:02d}",
                vcpu=vcpu,
                mem_gb=mem_gb,
                storage_gb=storage_gb,
                profile=profile,
                interval_s=interval_s,
            )
        )
    return City(
        providers=list(_PROVIDERS),
        districts=list(_DISTRICTS),
        units=units,
        resources=resources,
        provider_tokens={p.org_id: demo_token(p.org_id) for p in _PROVIDERS},
    )


def demo_token(provider_id: str) -> str:
    """The DEMO-ONLY bearer token of a provider: ``"demo-" + provider_id``; never for production."""
    return "demo-" + provider_id


def lifecycle_events(city: City, ts: datetime) -> list[LifecycleEvent]:
    """One ``delivered`` lifecycle event per resource, putting the whole city under supervision."""
    return [
        LifecycleEvent(
            event_id="demo-delivered-" + r.resource_id,
            resource_id=r.resource_id,
            type="delivered",
            ts=ts,
            provider_id=r.provider_id,
            unit_id=r.unit_id,
            district_id=r.district_id,
            name=r.name,
            spec=Spec(vcpu=r.vcpu, mem_gb=r.mem_gb, storage_gb=r.storage_gb),
            interval_s=r.interval_s,
        )
        for r in city.resources
    ]
