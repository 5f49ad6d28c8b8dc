"""``opscenter bench pipeline``: end-to-end samples/s against a raw-consumer reference, same run."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from opscenter import __version__, demo, kafka, simulator
from opscenter.embedded import free_port, start_tansu, start_valkey
from opscenter.services import create_topics, open_services
from opscenter.settings import Settings
from opscenter.wire import TOPIC_LIFECYCLE, TOPIC_TELEMETRY, json_encoder

GOAL_SAMPLES_S = 400_000
GOAL_RATIO = 0.3


async def _produce(settings: Settings, city: demo.City, samples: int, batch: int) -> int:
    """Pre-produce about ``samples`` samples of history (event time in the past)."""
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(settings), acks=1, linger_ms=20, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        for e in demo.lifecycle_events(city, __import__("datetime").datetime.now(__import__("datetime").timezone.utc)):
            await producer.send(TOPIC_LIFECYCLE, json_encoder.encode(e), key=e.resource_id.encode())
        per_s = simulator.samples_per_second(city)
        span_ms = int(samples / per_s * 1000)
        end_ms = (int(time.time() * 1000) // 60_000 - 10) * 60_000
        n = 0
        futs = []
        for key, value in simulator.batches(
            city, end_ms - span_ms, end_ms, batch_size=batch, rng=random.Random(1), bad_fraction=0.0, gaps=False,
            span_s=3600,
        ):  # fmt: skip
            futs.append(await producer.send(TOPIC_TELEMETRY, value, key=key))
            n += value.count(b'"resource_id"')
        await asyncio.gather(*futs)
        return n
    finally:
        await producer.stop()


async def _reference(settings: Settings, expect: int) -> float:
    """Raw aiokafka consumption plus orjson decode of the same batches, no processing."""
    c = AIOKafkaConsumer(
        TOPIC_TELEMETRY, **kafka.client_kwargs(settings), group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False, max_partition_fetch_bytes=16 * 1024 * 1024,
    )  # fmt: skip
    await c.start()
    n = 0
    t0 = time.perf_counter()
    try:
        while n < expect:
            for msgs in (await c.getmany(timeout_ms=500, max_records=1000)).values():
                for m in msgs:
                    n += len(orjson.loads(m.value)["samples"])
    finally:
        await c.stop()
    return n / (time.perf_counter() - t0)


async def _settle(app: Any, timeout_s: float = 60.0) -> None:
    """Let every agent finish what it has taken (the registry may still be storing lifecycle events).

    Faust's stop pauses the partitions and then waits for every message taken to be acked; a
    message still in an agent's take buffer then never is, and the stop hangs (seen here at the
    end of a 1M-sample run). Waiting for the agents before stopping avoids that.
    """
    consumer = app.consumer
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        consumer._clean_unacked_messages()  # noqa: SLF001 - Faust's own bookkeeping of taken messages
        if not consumer._unacked_messages:  # noqa: SLF001
            return
        await asyncio.sleep(0.1)
    print(f"  (agents still held {len(consumer._unacked_messages)} messages after {timeout_s:.0f} s)")  # noqa: SLF001


def _cpu_s(pids: tuple[int, ...] = ()) -> float:
    """CPU seconds (user + system, all threads) of this process, or of the processes ``pids``."""
    if not pids:
        return time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # gone, or not Linux
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _storage_ceiling(client: Any, settings: Settings, block_rows: int = 131_072) -> tuple[float, float]:
    """Samples/s of ClickHouse alone, and its CPU seconds: the samples just stored, inserted again
    in Kafka order and in blocks of the ingest's size into a scratch database with the product's
    tables and views."""
    from opscenter import store

    scratch = settings.model_copy(update={"clickhouse_database": "bench_ceiling"})
    store.migrate(store.connect(scratch), scratch)
    n = client.query("SELECT count() FROM samples").result_rows[0][0]
    t0, cpu0 = time.perf_counter(), _cpu_s()
    client.command(
        "INSERT INTO bench_ceiling.samples SELECT * FROM samples ORDER BY src_offset, src_partition "
        f"SETTINGS max_block_size = {block_rows}, min_insert_block_size_rows = {block_rows}, "
        "min_insert_block_size_bytes = 0, "
        + ", ".join(f"{k} = {v}" for k, v in store.INSERT_VIEW_SETTINGS.items())
    )
    return n / (time.perf_counter() - t0), _cpu_s() - cpu0


async def _pipeline(settings: Settings, expect: int, others: tuple[int, ...] = ()) -> dict[str, float]:
    """Samples/s end to end, the time taken, the CPU seconds used meanwhile by this process (the
    worker) and by ``others`` (broker, Redis), and the storage-alone figures of the same samples."""
    from faust.contrib.asgi import faust_app_running

    from streams.app import build_faust_app

    from opscenter import metrics

    consumed = metrics.messages_consumed.labels(TOPIC_TELEMETRY)

    def inserts() -> tuple[float, float]:  # (inserts into samples, seconds they were in flight) so far
        got = {s.name: s.value for m in metrics.sink_seconds.collect() for s in m.samples
               if s.labels.get("table") == "samples" and s.name.endswith(("_count", "_sum"))}  # fmt: skip
        return got.get("opscenter_sink_batch_seconds_count", 0.0), got.get("opscenter_sink_batch_seconds_sum", 0.0)
    services = await open_services(settings)
    try:
        app = build_faust_app(services)
        start = consumed._value.get()  # noqa: SLF001 - the process's own counter, before any consumer runs
        async with faust_app_running(app, stop_timeout=30):
            while consumed._value.get() == start:  # the clock starts with the first message consumed
                await asyncio.sleep(0.02)
            # time.thread_time() here: the event loop's own thread (Faust, the domains, validation)
            t0, cpu0, others0, ins0 = time.perf_counter(), _cpu_s(), _cpu_s(others), inserts()
            loop0 = time.thread_time()

            def stored() -> int:  # its own thread: the product's read pool may be busy with window queries
                return services.store.client.query("SELECT count() FROM samples").result_rows[0][0]

            while await asyncio.to_thread(stored) < expect:
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - t0
            cpu, others_cpu, loop_cpu = _cpu_s() - cpu0, _cpu_s(others) - others0, time.thread_time() - loop0
            ins1 = inserts()
            await _settle(app)
        ceiling, ceiling_cpu = await asyncio.to_thread(_storage_ceiling, services.store.client, settings)
        return {"rate": expect / elapsed, "elapsed": elapsed, "cpu": cpu, "others_cpu": others_cpu, "loop_cpu": loop_cpu,
                "ceiling": ceiling, "ceiling_cpu": ceiling_cpu, "inserts": ins1[0] - ins0[0],
                "insert_s": ins1[1] - ins0[1]}  # fmt: skip
    finally:
        await services.aclose()


async def pipeline(samples: int = 1_000_000, resources: int = 5000, batch: int = 500) -> dict[str, Any]:
    """Run the pipeline scenario on a private embedded stack; return the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="opscenter-bench-"))
    kport, rport = free_port(), free_port()
    tansu = start_tansu("127.0.0.1", kport, tmp / "logs")
    valkey = start_valkey("127.0.0.1", rport, tmp / "valkey", tmp / "logs")
    try:
        settings = Settings(
            kafka_url=f"kafka://127.0.0.1:{kport}", redis_url=f"redis://127.0.0.1:{rport}/0",
            data_dir=tmp, topic_partitions=4, demo=False, app_id="bench",
        )  # fmt: skip
        await create_topics(settings)
        city = demo.city(resources)
        produced = await _produce(settings, city, samples, batch)
        ref = await _reference(settings, produced)
        run = await _pipeline(settings, produced, (tansu.proc.pid, valkey.proc.pid))
    finally:
        tansu.stop()
        valkey.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    per_m = 1e6 / produced  # CPU seconds per million samples
    cores = os.cpu_count() or 1
    return {
        "scenario": "pipeline",
        "samples": produced,
        "resources": resources,
        "batch_samples": batch,
        "end_to_end_samples_s": round(run["rate"]),
        "reference_samples_s": round(ref),
        "ratio": round(run["rate"] / ref, 3),
        "storage_ceiling_samples_s": round(run["ceiling"]),
        "elapsed_s": round(run["elapsed"], 2),
        # the inserts into samples (one at a time, in Kafka order) and how long they were in flight:
        # the insert chain is busy most of the run; with the interpreter lock it bounds the figure (README, "Benchmarks")
        "samples_inserts": int(run["inserts"]),
        "samples_insert_s": round(run["insert_s"], 2),
        # core-seconds per million samples: the worker process (Faust, the domains, chDB) and of it
        # the event loop's thread (the rest: chDB's threads, the insert and read threads), the
        # broker and Redis meanwhile, and ClickHouse alone; the goal allows cores / goal per sample
        "cpu_s_per_million": {
            "worker": round(run["cpu"] * per_m, 2),
            "event_loop": round(run["loop_cpu"] * per_m, 2),
            "broker_and_redis": round(run["others_cpu"] * per_m, 2),
            "storage_alone": round(run["ceiling_cpu"] * per_m, 2),
            "budget_at_goal": round(cores * 1e6 / GOAL_SAMPLES_S, 2),
        },
        "cores": cores,
        "goal_samples_s": GOAL_SAMPLES_S,
        "goal_ratio": GOAL_RATIO,
    }


def pipeline_subprocess(samples: int, resources: int) -> dict[str, Any]:
    """:func:`pipeline` in a process of its own (each run opens a chDB path; chDB allows one per process)."""
    code = ("import asyncio, json; from opscenter import bench; "
            f"print(json.dumps(asyncio.run(bench.pipeline({samples}, {resources}))))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline run failed (exit {proc.returncode})")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def pipeline_runs(samples: int, resources: int, runs: int) -> dict[str, Any]:
    """``runs`` pipeline runs, each in its own process: the median run's figures (by end-to-end
    rate; of an even number, the lower middle one), with every run's rate and ratio beside them."""
    figs = []
    for i in range(runs):
        figs.append(pipeline_subprocess(samples, resources))
        print(f"  run {i + 1}/{runs}: {figs[-1]['end_to_end_samples_s']:,} samples/s, ratio {figs[-1]['ratio']}",
              flush=True)  # fmt: skip
    by_rate = sorted(figs, key=lambda f: f["end_to_end_samples_s"])
    return {**by_rate[(runs - 1) // 2], "runs": runs,
            "end_to_end_runs": [f["end_to_end_samples_s"] for f in figs], "ratio_runs": [f["ratio"] for f in figs]}  # fmt: skip


def report(fig: dict[str, Any]) -> str:
    ok = lambda v, g: "met" if v >= g else "NOT met"  # noqa: E731
    cpu = fig["cpu_s_per_million"]
    runs = fig.get("runs", 1)
    rates = fig.get("end_to_end_runs", [])
    return "\n".join([
        f"pipeline: {fig['samples']:,} samples, {fig['resources']:,} resources, {fig['batch_samples']} per message"
        + (f"; median of {runs} runs (end to end {min(rates):,}–{max(rates):,} samples/s)" if runs > 1 else ""),
        f"  end to end  {fig['end_to_end_samples_s']:>12,} samples/s   goal {GOAL_SAMPLES_S:,}: "
        f"{ok(fig['end_to_end_samples_s'], GOAL_SAMPLES_S)}   (over {fig['elapsed_s']} s)",
        f"  reference   {fig['reference_samples_s']:>12,} samples/s   (aiokafka + orjson, no processing)",
        f"  ratio       {fig['ratio']:>12}             goal {GOAL_RATIO}: {ok(fig['ratio'], GOAL_RATIO)}",
        f"  storage     {fig['storage_ceiling_samples_s']:>12,} samples/s   (ClickHouse alone: the same samples with the"
        " rollup views, ingest-sized blocks — the bound of this machine's embedded chDB)",
        f"  inserts     {fig['samples_inserts']:>12,} into samples, in flight {fig['samples_insert_s']} s of the"
        f" {fig['elapsed_s']} s (one at a time, in Kafka order)",
        f"  cpu         {cpu['worker'] + cpu['broker_and_redis']:>12.2f} core-s per 1M samples end to end (worker "
        f"{cpu['worker']:.2f}: event loop {cpu['event_loop']:.2f}, chDB and the other threads "
        f"{cpu['worker'] - cpu['event_loop']:.2f}; broker + Redis {cpu['broker_and_redis']:.2f}); ClickHouse alone"
        f" {cpu['storage_alone']:.2f}; the goal leaves {cpu['budget_at_goal']:.2f} on {fig['cores']} cores",
    ])  # fmt: skip


def write(fig: dict[str, Any], out_dir: Path = Path("bench/results")) -> Path:
    """Save a scenario's figures with the settings, machine and version, as JSON."""
    fig = {**fig, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                              "python": platform.python_version()},
           "version": __version__, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{fig['scenario']}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(fig, indent=2, ensure_ascii=False) + "\n")
    print(f"  written to {path}")
    return path


def main(scenario: str, *, samples: int = 1_000_000, resources: int = 5000, clients: list[int] | None = None,
         seconds: float = 10.0, levels: list[int] | None = None, out_dir: Path = Path("bench/results"),
         runs: int = 1) -> dict[str, Any]:  # fmt: skip
    """Run one scenario, print a table with the goal beside each figure, write the JSON."""
    if scenario == "pipeline":
        fig = asyncio.run(pipeline(samples, resources)) if runs <= 1 else pipeline_runs(samples, resources, runs)
        print(report(fig))
    elif scenario == "fanout":
        from opscenter.bench_fanout import GOAL_CLIENTS, GOAL_P99_MS, fanout

        print(f"fanout: live feed frames, {seconds:.0f} s per level")
        fig = asyncio.run(fanout(clients or [100, 500, 1000, 2000], seconds))
        met = "met" if fig["largest_n_p99_under_goal"] >= GOAL_CLIENTS else "NOT met"
        print(f"  largest N with p99 < {GOAL_P99_MS:.0f} ms: {fig['largest_n_p99_under_goal']:,}   "
              f"goal {GOAL_CLIENTS:,}: {met}")
    elif scenario == "memory":
        from opscenter.bench_memory import GOAL_MIB_AT_10K, memory

        print("memory: worker RSS by resource count")
        fig = memory(levels or [1000, 10_000, 50_000])
        at = fig["rss_mib_at_10k"]
        if at is not None:
            print(f"  at 10,000 resources: {at:.0f} MiB   goal < {GOAL_MIB_AT_10K} MiB: "
                  f"{'met' if at < GOAL_MIB_AT_10K else 'NOT met'}")
    elif scenario == "alert-latency":
        from opscenter.bench_alerts import GOAL_LEVEL, GOAL_P99_MS, alert_latency

        print(f"alert-latency: breaching sample produced → alert on /ws/live, {seconds:.0f} s per load level")
        fig = asyncio.run(alert_latency(levels or [10, 50, 90], max(seconds, 6.0), min(samples, 300_000)))
        p99 = fig["p99_ms_at_50pct"]
        if p99 is not None:
            print(f"  p99 at {GOAL_LEVEL} % load: {p99:.0f} ms   goal < {GOAL_P99_MS:.0f} ms: "
                  f"{'met' if p99 < GOAL_P99_MS else 'NOT met'}")
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    write(fig, out_dir)
    return fig
