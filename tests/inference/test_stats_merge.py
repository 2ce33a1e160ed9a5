"""Serving merges ingestion's per-partition statistics: the merge of two partitions'
snapshots is the statistics of all their rows, and the follower keeps the latest
snapshot of each partition from the real broker."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from schemas.usecase import UseCase, load_usecase
from services.common.bus import ensure_topics, start_producer
from services.common.prep.preparer import Preparer
from services.inference.features import FeatureResolver
from services.inference.stats import StatisticsFollower, merge_states
from tests.integration.test_ingest_path import valid_events

ROOT = Path(__file__).resolve().parents[2]


def _spec(name: str, usecase: str = "credit") -> UseCase:
    return load_usecase(ROOT / "usecases" / f"{usecase}.yaml").model_copy(update={"name": name})


def _learned(spec: UseCase, events: list[dict[str, Any]]) -> Preparer:
    preparer = Preparer(spec)
    for event in events:
        preparer.prepare(event)
    return preparer


@pytest.mark.parametrize("usecase", ["credit", "friedman"])
def test_two_partitions_merged_are_the_statistics_of_all_rows(usecase: str) -> None:
    """credit imputes by median and most frequent, friedman by mean: every kind merges."""
    spec = _spec(usecase, usecase)
    events = valid_events(spec, 300)
    first, second = events[::3], [e for i, e in enumerate(events) if i % 3]  # 100 and 200
    merged = merge_states([_learned(spec, first).state(), _learned(spec, second).state()])
    every = _learned(spec, events).state()
    assert merged["rows"] == every["rows"] == 300
    assert merged["fields"].keys() == every["fields"].keys() and merged["fields"]
    kinds = set()
    for name, wanted in every["fields"].items():
        got = merged["fields"][name]
        kinds.add(wanted["impute"])
        if wanted["impute"] == "mean":
            assert got["count"] == wanted["count"]
            assert got["mean"] == pytest.approx(wanted["mean"], rel=1e-12)
        elif wanted["impute"] == "median":  # fewer values than a window: all are kept
            assert sorted(got["values"]) == sorted(wanted["values"])
            assert statistics.median(got["values"]) == statistics.median(wanted["values"])
        else:
            assert got["counts"] == wanted["counts"]
    assert kinds == ({"mean"} if usecase == "friedman" else {"median", "most_frequent"})
    # What serving imputes with: a preparer restored from the merge imputes as one that
    # learned every row (a missing salary gets the median of all salaries).
    restored, learned = Preparer(spec, merged), _learned(spec, events)
    probe = {**events[0], "event_id": "probe"}
    probe.pop(next(iter(every["fields"])), None)
    served = restored.prepare(probe, learn=False).features
    assert served == pytest.approx(learned.prepare(probe, learn=False).features, rel=1e-9)
    assert served != Preparer(spec).prepare(probe, learn=False).features  # not the fallback


def test_a_field_imputed_differently_across_partitions_is_not_merged() -> None:
    spec = _spec("credit")
    state = _learned(spec, valid_events(spec, 20)).state()
    name = next(n for n, f in state["fields"].items() if f["impute"] == "median")
    other = json.loads(json.dumps(state))
    other["fields"][name] = {"impute": "mean", "count": 1, "mean": 1.0}
    with pytest.raises(ValueError, match="imputed by"):
        merge_states([state, other])


async def publish_snapshots(bootstrap: str, usecase: str, items: list[tuple[str, str]]) -> None:
    """(key, value) records on ``<uc>.stats``, as ingestion keys them (``<uc>/<partition>``)."""
    await ensure_topics(bootstrap, [topics.stats(usecase)])
    producer = await start_producer(bootstrap)
    try:
        for key, value in items:
            await producer.send_and_wait(topics.stats(usecase), value.encode(), key=key.encode())
    finally:
        await producer.stop()


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.integration
def test_the_follower_serves_the_merge_of_each_partitions_latest_snapshot(
    bootstrap: str, unique: str
) -> None:
    spec = _spec(unique)
    events = valid_events(spec, 90)
    p0, p1_early, p1_late = events[:40], events[40:60], events[40:]
    resolver = FeatureResolver(spec, None)

    async def run() -> list[int]:
        follower = StatisticsFollower(bootstrap, {unique: resolver}, refresh_seconds=0.05)
        await follower.start()
        seen = [resolver.preparer.rows]
        try:
            state = _learned(spec, p0).state()
            legacy = _learned(spec, events).state()  # a key of no partition: ignored
            await publish_snapshots(
                bootstrap,
                unique,
                [(unique, json.dumps(legacy)), (f"{unique}/0", json.dumps(state))],
            )
            await _until(lambda: resolver.preparer.rows == 40)
            seen.append(resolver.preparer.rows)
            await publish_snapshots(
                bootstrap, unique, [(f"{unique}/1", json.dumps(_learned(spec, p1_early).state()))]
            )
            await _until(lambda: resolver.preparer.rows == 60)
            seen.append(resolver.preparer.rows)
            # Partition 1 again, further on; and one that is another use case's: skipped.
            late = json.dumps(_learned(spec, p1_late).state())
            wrong = json.dumps({**state, "usecase": "another"})
            await publish_snapshots(
                bootstrap, unique, [(f"{unique}/1", late), (f"{unique}/0", wrong)]
            )
            await _until(lambda: resolver.preparer.rows == 90)
            seen.append(resolver.preparer.rows)
        finally:
            await follower.stop()
        return seen

    assert asyncio.run(run()) == [0, 40, 60, 90]
    wanted = merge_states([_learned(spec, p0).state(), _learned(spec, p1_late).state()])
    assert resolver.preparer.state() == Preparer(spec, wanted).state()
