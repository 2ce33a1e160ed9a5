"""B1 ingest, B6 freshness and B9 footprint: raw events through ingestion and features.

B1 and B6 share one stack (broker, ingestion, features), started on first use;
each repetition has a use case (and so topics) of its own. B9 starts every
service there is, because it weighs the whole stack. (B1r, B1 with replicas,
is :mod:`bench.replicas`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from bench.data import workload
from bench.runner import (
    BenchContext,
    Criterion,
    Result,
    Side,
    Target,
    benchmark,
    interleaved,
    measured,
    median,
    percentile,
    spec_of,
)
from bench.stack import USECASES, BenchStack, StackError, publish, wait_for
from schemas import topics
from schemas.usecase import load_usecase
from services.common.seen import SeenIds

INGEST_SERVICES = ["ingestion", "features"]
SIZE_FACTOR = 5  # B1's second size: 100,000 events beside 20,000 (10,000 beside 2,000 quick)


def ingest_stack(context: BenchContext) -> BenchStack:
    """The shared ingestion + features stack, with use cases for B1's and B6's repetitions."""
    if "ingest_stack" in context.cache:
        stack: BenchStack = context.cache["ingest_stack"]
        return stack
    stack = BenchStack(Path(context.workdir) / "ingest")
    for name in ["b1warm", *(f"b1r{rep}" for rep in range(context.repetitions)), "b1big", "b6"]:
        stack.add_usecase(name)
    try:
        stack.start_broker()
        for service in INGEST_SERVICES:
            stack.start(service)
        stack.wait_ready(INGEST_SERVICES, timeout=180)
    except BaseException:
        stack.close()
        raise
    context.keep("ingest_stack", stack, stack.close, users=("B1", "B6"))
    return stack


def payloads(context: BenchContext, count: int) -> list[bytes]:
    key = ("payloads", count)
    if key not in context.cache:
        spec = load_usecase(USECASES / "credit.yaml")
        context.cache[key] = [json.dumps(e).encode() for e in workload(spec, count).events]
    found: list[bytes] = context.cache[key]
    return found


def ingest_through_stack(
    stack: BenchStack, usecase: str, load: list[bytes], keys: list[bytes] | None = None
) -> float:
    """Publish ``load`` to the use case's raw topic; seconds from the first send until
    the features service (its replicas together) has recorded every row as written to
    the feature store.

    Read from the features service's seen record (its SQLite file, which replicas share),
    which a row joins once its store write is done: polling the service's /metrics
    instead had it render its registry 20 times a second, 6.7% of its samples under B1.
    The count is asked only once the last event's row is recorded.
    """
    started = asyncio.run(publish(stack.bootstrap, topics.raw(usecase), load, keys))
    last = json.loads(load[-1]).get("event_id") if load else None
    with contextlib.closing(SeenIds(stack.home / "features" / "seen.db")) as seen:

        def written() -> bool:
            # The last event's mark first (one key), the count (every mark of the use
            # case, 5.9 ms at 100,000: 12% of a core at 20 polls a second) once it is in.
            if last is not None and seen.unseen(usecase, "features", [last]):
                return False
            return seen.count(usecase, "features") >= len(load)

        if not wait_for(written, timeout=60 + len(load) / 100, interval=0.05):
            logs = " ".join(f"{name} log: {stack.tail(name)}" for name in stack.processes)
            raise StackError(f"{usecase}: not every row written; {logs}")
    return time.monotonic() - started


async def raw_consume(bootstrap: str, topic: str, load: list[bytes]) -> float:
    """The baseline: seconds from the first send until a plain aiokafka consumer has
    every one of ``load`` (producer and consumer as the candidate's)."""
    from services.common.bus import ensure_topics, start_consumer, start_producer

    await ensure_topics(bootstrap, [topic])
    consumer = await start_consumer(bootstrap, [topic], None)
    producer = await start_producer(bootstrap)
    try:
        started = time.monotonic()

        async def produce() -> None:
            futures = [await producer.send(topic, payload) for payload in load]
            await asyncio.gather(*futures)

        sending = asyncio.create_task(produce())
        received = 0
        while received < len(load):
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            received += sum(len(records) for records in batches.values())
        elapsed = time.monotonic() - started
        await sending
        return elapsed
    finally:
        await producer.stop()
        await consumer.stop()


@benchmark(
    "B1",
    "ingest",
    Target(
        "ratio >= 0.5 and >= 10,000 events/s",
        [Criterion("ratio", ">=", 0.5), Criterion("figure", ">=", 10_000)],
    ),
)
def ingest(context: BenchContext) -> Result:
    count = context.size(20_000, 2_000)
    load = payloads(context, count)
    context.progress.start(2 * context.repetitions + 2)
    stack = ingest_stack(context)
    ingest_through_stack(stack, "b1warm", load[:200])  # first push, first agent event
    context.progress.advance()

    def run(side: Side, rep: int) -> float:
        if side == "baseline":
            seconds = asyncio.run(raw_consume(stack.bootstrap, f"bench-raw-b1-{rep}", load))
        else:
            seconds = ingest_through_stack(stack, f"b1r{rep}", load)
        return count / seconds

    baselines, candidates = interleaved(run, context.repetitions, context.progress)
    # The second size (issue 15.6): one run a side of SIZE_FACTOR times the events, so
    # the cost an event at both sizes shows whether it grows with the work.
    big = payloads(context, count * SIZE_FACTOR)
    big_baseline = len(big) / asyncio.run(raw_consume(stack.bootstrap, "bench-raw-b1-big", big))
    big_candidate = len(big) / ingest_through_stack(stack, "b1big", big)
    context.progress.advance()
    growth = median(candidates) / big_candidate  # > 1: an event costs more in the longer run
    return measured(
        spec_of("B1"),
        figure=median(candidates),
        unit="events/s",
        baseline=median(baselines),
        repetitions=context.repetitions,
        notes=f"{count:,} events, first publish until all rows are in the feature store "
        f"(offline Parquet + online SQLite); at {len(big):,} events (one run a side): "
        f"{big_candidate:,.0f} events/s against {big_baseline:,.0f} raw, "
        f"cost an event x{growth:.2f} of the {count:,}-event run's",
        details={
            "candidate_runs": candidates,
            "baseline_runs": baselines,
            "events": count,
            "sizes": {
                str(count): {"events_per_s": median(candidates), "raw": median(baselines)},
                str(len(big)): {"events_per_s": big_candidate, "raw": big_baseline},
                "cost_per_event_growth": round(growth, 3),
            },
        },
    )


async def freshness_run(
    stack: BenchStack, store: Any, spec: Any, events: list[dict[str, Any]], rep: int
) -> tuple[list[float], list[float]]:
    """Per event, interleaved: publish-to-readable-online (candidate) and
    produce-to-consume on a plain topic (baseline), in seconds."""
    from services.common import featurestore
    from services.common.bus import ensure_topics, start_consumer, start_producer

    raw_topic = topics.raw(spec.name)
    plain_topic = f"bench-raw-b6-{rep}"
    await ensure_topics(stack.bootstrap, [raw_topic, plain_topic])
    consumer = await start_consumer(stack.bootstrap, [plain_topic], None)
    producer = await start_producer(stack.bootstrap)
    candidate: list[float] = []
    baseline: list[float] = []
    try:
        for index, event in enumerate(events):
            order = ("baseline", "candidate") if index % 2 == 0 else ("candidate", "baseline")
            payload = json.dumps(event).encode()
            for side in order:
                started = time.monotonic()
                if side == "baseline":
                    sent = await producer.send(plain_topic, payload)
                    await consumer.getone()
                    baseline.append(time.monotonic() - started)
                    await sent
                    continue
                sent = await producer.send(raw_topic, payload, key=event["entity_id"].encode())
                deadline = started + 60
                while True:
                    found = featurestore.online_features(store, spec, [event["entity_id"]])[0]
                    if found.get(featurestore.EVENT_ID) == event["event_id"]:
                        break
                    if time.monotonic() > deadline:
                        raise StackError(f"event {event['event_id']} not readable online in 60 s")
                    await asyncio.sleep(0.002)
                candidate.append(time.monotonic() - started)
                await sent
    finally:
        await producer.stop()
        await consumer.stop()
    return baseline, candidate


@benchmark("B6", "freshness", Target("ratio <= 4", [Criterion("ratio", "<=", 4.0)]))
def freshness(context: BenchContext) -> Result:
    from services.common import featurestore

    count = context.size(100, 20)
    context.progress.start(context.repetitions + 1)
    stack = ingest_stack(context)
    spec = stack.usecase("b6")
    store = featurestore.open_store(
        featurestore.FeatureStoreSettings(home=stack.home), [spec], apply=False
    )
    events = workload(spec, count * context.repetitions, seed=11).events
    context.progress.advance()
    p99_baseline: list[float] = []
    p99_candidate: list[float] = []
    for rep in range(context.repetitions):
        # One entity per event: the row read back is this event's and no other's.
        chunk = [
            {**event, "entity_id": f"fresh-{rep}-{index:05d}"}
            for index, event in enumerate(events[rep * count : (rep + 1) * count])
        ]
        baseline, candidate = asyncio.run(freshness_run(stack, store, spec, chunk, rep))
        p99_baseline.append(percentile(baseline, 0.99) * 1000)
        p99_candidate.append(percentile(candidate, 0.99) * 1000)
        context.progress.advance()
    return measured(
        spec_of("B6"),
        figure=median(p99_candidate),
        unit="ms p99",
        baseline=median(p99_baseline),
        repetitions=context.repetitions,
        notes=f"{count} events a repetition, one at a time, publish until its row is "
        "readable with Feast get_online_features; baseline and candidate alternate per event",
        details={"candidate_p99_ms": p99_candidate, "baseline_p99_ms": p99_baseline},
    )


class PeakRss:
    """Samples the summed RSS of some processes (and their children) in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.1) -> None:
        self.pids = pids
        self.interval = interval
        self.peak = 0
        self.peak_by_process: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            by_process: dict[str, int] = {}
            for name, pid in self.pids.items():
                try:
                    root = psutil.Process(pid)
                    family = [root, *root.children(recursive=True)]
                    rss = sum(p.memory_info().rss for p in family)
                except psutil.Error:
                    continue
                by_process[name] = rss
                total += rss
            if total > self.peak:
                self.peak, self.peak_by_process = total, by_process
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@benchmark("B9", "footprint", Target("<= 3 GB", [Criterion("figure", "<=", 3.0)]))
def footprint(context: BenchContext) -> Result:
    from services.cli.up import discover_services

    count = context.size(20_000, 2_000)
    load = payloads(context, count)
    services = discover_services()
    context.progress.start(2)
    stack = BenchStack(Path(context.workdir) / "footprint")
    stack.add_usecase("b9")
    with stack:
        for service in services:
            stack.start(service)
        stack.wait_ready(services, timeout=240)
        context.progress.advance()
        with PeakRss(stack.pids()) as sampler:
            seconds = ingest_through_stack(stack, "b9", load)
            time.sleep(1.0)  # the services' work right after the last row
        context.progress.advance()
    peak_gb = sampler.peak / 1e9
    breakdown = ", ".join(
        f"{name}: {rss / 1e6:.0f} MB" for name, rss in sorted(sampler.peak_by_process.items())
    )
    return measured(
        spec_of("B9"),
        figure=peak_gb,
        unit="GB",
        baseline=None,
        repetitions=1,
        notes=f"broker + {', '.join(services)} under {count:,} raw events "
        f"({count / seconds:,.0f} events/s); at the peak: {breakdown}",
        details={"peak_by_process_bytes": sampler.peak_by_process, "services": services},
    )
