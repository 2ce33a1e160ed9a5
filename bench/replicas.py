"""B1r ingest with replicas: B1's load with 2 replicas of ingestion and features against 1.

Two stacks of their own (broker, home), both in group mode with topics of 3
partitions, as the production profile's: one runs a replica of each service,
the other two; repetitions alternate between them (ABBA), each with a use
case of its own. Besides the rates, each run counts what became of its
events on ``<uc>.features`` and in the offline store's Parquet parts: the
target is that nothing is lost and nothing is there twice. On 2 cores no
gain is expected from the second replica.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bench.ingest import INGEST_SERVICES, ingest_through_stack, payloads
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
    spec_of,
)
from bench.stack import BenchStack
from schemas import topics

# B1r: topics with 3 partitions, as the production profile's; replicas a side.
PARTITIONS = 3
REPLICAS: dict[Side, int] = {"baseline": 1, "candidate": 2}


def replica_stack(context: BenchContext, side: Side) -> BenchStack:
    """B1r's stack of one side: group mode, ``REPLICAS[side]`` of ingestion and of features."""
    if ("replica_stack", side) in context.cache:
        found: BenchStack = context.cache[("replica_stack", side)]
        return found
    from services.common.bus import ensure_topics

    stack = BenchStack(Path(context.workdir) / f"replicas-{REPLICAS[side]}")
    names = ["warm", *(f"run{rep}" for rep in range(context.repetitions))]
    for name in names:
        stack.add_usecase(name)
    try:
        stack.start_broker()
        asyncio.run(ensure_topics(stack.bootstrap, [topics.raw(n) for n in names], PARTITIONS))
        group = {"DRIFTLINE_CONSUMER_MODE": "group", "DRIFTLINE_PARTITIONS": str(PARTITIONS)}
        for service in INGEST_SERVICES:
            for replica in range(1, REPLICAS[side] + 1):
                stack.start(service, f"{service}-{replica}", **group)
        stack.wait_ready(stack.processes, timeout=240)
    except BaseException:
        stack.close()
        raise
    context.keep(("replica_stack", side), stack, stack.close, users=("B1r",))
    return stack


def tally(stack: BenchStack, usecase: str, sent: list[str]) -> dict[str, int]:
    """What became of the raw events ``sent`` (their ids): rows on ``<uc>.features`` and
    in the offline store's Parquet parts, each as found and as distinct events."""
    import pandas as pd

    from services.common import dataset, featurestore

    on_topic = asyncio.run(source_ids(stack.bootstrap, topics.features(usecase)))
    directory = featurestore.features_dir(stack.home, usecase)
    with dataset.reading(directory):
        parts = [pd.read_parquet(part) for part in sorted(directory.glob("*.parquet"))]
    stored = pd.concat(parts)["source_event_id"].tolist() if parts else []
    return {
        "events": len(sent),
        "topic_rows": len(on_topic),
        "store_rows": len(stored),
        "lost": len(set(sent) - set(stored)) + len(set(sent) - set(on_topic)),
        "twice": len(on_topic) - len(set(on_topic)) + len(stored) - len(set(stored)),
    }


async def source_ids(bootstrap: str, topic: str) -> list[str]:
    """The source event id of every feature row on ``topic``, all partitions."""
    from services.common.bus import start_consumer
    from services.common.serde import decode

    consumer = await start_consumer(bootstrap, [topic], None)
    found: list[str] = []
    try:
        while batches := await consumer.getmany(timeout_ms=2000, max_records=5000):
            for records in batches.values():
                found += [decode(topics.FEATURES, r.value).source_event_id for r in records]
    finally:
        await consumer.stop()
    return found


@benchmark(
    "B1r",
    "ingest with replicas",
    Target(
        "reported (2 cores: no gain expected); nothing lost, nothing twice",
        [Criterion("lost", "==", 0), Criterion("twice", "==", 0)],
    ),
)
def ingest_replicas(context: BenchContext) -> Result:
    count = context.size(20_000, 2_000)
    load = payloads(context, count)
    events = [json.loads(payload) for payload in load]
    keys = [event["entity_id"].encode() for event in events]  # spread over the partitions
    ids = [event["event_id"] for event in events]
    context.progress.start(2 * context.repetitions + 2)
    for side in REPLICAS:
        stack = replica_stack(context, side)
        ingest_through_stack(stack, "warm", load[:200], keys[:200])  # groups joined
        context.progress.advance()
    counts: dict[Side, list[dict[str, int]]] = {"baseline": [], "candidate": []}

    def run(side: Side, rep: int) -> float:
        stack = replica_stack(context, side)
        seconds = ingest_through_stack(stack, f"run{rep}", load, keys)
        counts[side].append(tally(stack, f"run{rep}", ids))
        return count / seconds

    baselines, candidates = interleaved(run, context.repetitions, context.progress)
    every = counts["baseline"] + counts["candidate"]
    lost, twice = sum(c["lost"] for c in every), sum(c["twice"] for c in every)
    return measured(
        spec_of("B1r"),
        figure=median(candidates),
        unit="events/s",
        baseline=median(baselines),
        repetitions=context.repetitions,
        notes=f"{count:,} events a run, {PARTITIONS} partitions, group mode: 2 replicas each "
        f"of ingestion and features against 1 (baseline); lost {lost}, twice {twice} "
        "(on <uc>.features and in the offline store's Parquet parts, both sides)",
        extra={"lost": lost, "twice": twice},
        details={
            "candidate_runs": candidates,
            "baseline_runs": baselines,
            "counts": {side: found for side, found in counts.items()},
        },
    )
