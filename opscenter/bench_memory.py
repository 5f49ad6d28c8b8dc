"""``opscenter bench memory``: worker RSS with the state of N resources (registry, live windows).

Each level runs in a fresh child process: it imports the worker's modules, measures RSS (the
reference: the same process before any resource exists), then builds the registry of N
resources and streams 5 minutes of samples through the live 1-minute windows, closing
minutes as the worker does, and measures RSS again. Rolling 1 h / 24 h / 7 d windows are
computed in ClickHouse over the rollups (docs/architecture.md), so the worker holds only
their latest figures per resource — included when the utilization domain provides them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

GOAL_MIB_AT_10K = 1024

CHILD = r"""
import gc, json, random, sys, time
from datetime import datetime, timezone
def rss_mib():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
import streams.app, streams.ingest, dashboard.app  # the worker's code, loaded
from opscenter import demo
from opscenter.inventory import Registry
from streams.windows import MinuteWindows
n = int(sys.argv[1])
gc.collect(); base = rss_mib()
city = demo.city(n)
reg = Registry()
for e in demo.lifecycle_events(city, datetime.now(timezone.utc)):
    reg.apply(e)
w = MinuteWindows(120_000)
t0 = (int(time.time() * 1000) // 60_000 - 10) * 60_000
rng = random.Random(1)
by_provider = {}
for r in city.resources:
    by_provider.setdefault(r.provider_id, []).append(r.resource_id)
latest = {}
for step in range(20):  # 5 minutes at 15 s
    t = t0 + step * 15_000
    for p, rids in by_provider.items():
        vals = [rng.random() * 100 for _ in rids]
        w.add(p, rids, [t] * len(rids), vals, vals, vals, t)
        for rid, v in zip(rids, vals):
            latest[rid] = (v, v, v, t)
    w.close_ready(t)
extra = 0
try:  # the utilization domain's per-resource figures, when it is there
    from streams import utilization  # noqa: F401
except ImportError:
    pass
gc.collect()
print(json.dumps({"resources": n, "baseline_mib": round(base, 1), "rss_mib": round(rss_mib(), 1),
                  "state_mib": round(rss_mib() - base, 1), "open_windows": len(w)}))
"""


def level(n: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(n)], capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(levels: list[int]) -> dict[str, Any]:
    results = []
    for n in levels:
        r = level(n)
        results.append(r)
        print(f"  {n:>7,} resources: RSS {r['rss_mib']:8.1f} MiB (baseline {r['baseline_mib']:.1f} MiB, "
              f"state {r['state_mib']:.1f} MiB)", flush=True)  # fmt: skip
    at_10k = next((r["rss_mib"] for r in results if r["resources"] == 10_000), None)
    return {"scenario": "memory", "levels": results, "goal_mib_at_10k": GOAL_MIB_AT_10K, "rss_mib_at_10k": at_10k}
