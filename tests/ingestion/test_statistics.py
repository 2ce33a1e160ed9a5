"""Ingestion's statistics per raw partition: recorded, published once per change and at
start, and taken over, on the real broker, by a replica with no record of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from schemas.usecase import load_usecase
from services.common.bus import ensure_topics, start_producer
from services.common.prep import Preparer
from services.common.seen import SeenIds
from services.ingestion.processor import Ingestion
from services.ingestion.statistics import snapshot_key, state_name
from tests.ingestion.test_processor import ingestion_of
from tests.integration.test_ingest_path import valid_events
from tests.records import consumer_record
from tests.stack import ROOT, read_topic

pytestmark = pytest.mark.integration


def _record(topic: str, partition: int, offset: int, value: bytes) -> Any:
    return dataclasses.replace(consumer_record(topic, offset, value), partition=partition)


def _topics(usecase: str) -> list[str]:
    return [topics.features(usecase), topics.deadletter(usecase), topics.stats(usecase)]


def _keys(bootstrap: str, usecase: str) -> list[str]:
    """The key of every record on ``<uc>.stats``, in order."""
    from aiokafka import AIOKafkaConsumer

    async def read() -> list[str]:
        consumer = AIOKafkaConsumer(
            topics.stats(usecase), bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=2000)
            return [r.key.decode() for rs in batches.values() for r in rs if r.key]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_recorded_statistics_are_published_once_per_change_and_at_start(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = [json.dumps(e).encode() for e in valid_events(spec, 25)]
    raw = topics.raw(unique)
    seen = SeenIds(tmp_path / "seen.db")

    async def run() -> list[int]:
        await ensure_topics(bootstrap, _topics(unique))
        producer = await start_producer(bootstrap)
        try:
            first = ingestion_of(spec, seen, producer, bootstrap)
            sent = [await first.statistics.publish()]  # nothing recorded yet
            for offset, value in enumerate(events[:10]):
                await first.process(consumer_record(raw, offset, value))
            sent.append(await first.statistics.publish())  # processed, not yet recorded
            await first.flush()
            sent += [await first.statistics.publish(), await first.statistics.publish()]
            for offset, value in enumerate(events[10:20], start=10):
                await first.process(consumer_record(raw, offset, value))
            await first.flush()
            sent.append(await first.statistics.publish())
            # A start: the record holds what the topic holds, so nothing is sent again.
            restarted = ingestion_of(spec, seen, producer, bootstrap)
            sent.append(await restarted.statistics.publish_recorded())
            # Recorded but not published (the process died first; or a new broker log):
            # the next start sends it at once.
            for offset, value in enumerate(events[20:], start=20):
                await restarted.process(consumer_record(raw, offset, value))
            await restarted.flush()
            again = ingestion_of(spec, seen, producer, bootstrap)
            sent.append(await again.statistics.publish_recorded())
            return sent
        finally:
            await producer.stop()

    assert asyncio.run(run()) == [0, 0, 1, 0, 1, 0, 1]
    snapshots = read_topic(bootstrap, topics.stats(unique))
    assert [s["rows"] for s in snapshots] == [10, 20, 25]
    assert [s["offset"] for s in snapshots] == [10, 20, 25]
    assert _keys(bootstrap, unique) == [snapshot_key(unique, 0)] * 3
    assert snapshots[-1] == seen.state(state_name(unique, 0))
    assert snapshots[-1]["usecase"] == unique


def test_a_replica_on_another_machine_takes_a_partition_over_with_its_statistics(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """Replica A records and publishes partitions 0 and 1, then dies before committing
    partition 1's last 10 records; replica B, with its own empty home, is handed partition 1
    from there: it carries on from partition 1's statistics, and learns none twice."""
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = [json.dumps(e).encode() for e in valid_events(spec, 70)]
    on_0, on_1 = events[:30], events[30:]  # partition 1: offsets 0..39, A handles 0..29
    raw = topics.raw(unique)

    async def run() -> tuple[dict[str, Any], Ingestion]:
        await ensure_topics(bootstrap, _topics(unique))
        producer = await start_producer(bootstrap)
        try:
            a = ingestion_of(spec, SeenIds(tmp_path / "a" / "seen.db"), producer, bootstrap)
            for offset, value in enumerate(on_0):
                await a.process(_record(raw, 0, offset, value))
            for offset, value in enumerate(on_1[:30]):
                await a.process(_record(raw, 1, offset, value))
            await a.flush()
            assert await a.statistics.publish() == 2
            b = ingestion_of(spec, SeenIds(tmp_path / "b" / "seen.db"), producer, bootstrap)
            for offset in range(20, 40):  # 20..29 come again: A never committed them
                await b.process(_record(raw, 1, offset, on_1[offset]))
            await b.flush()
            return a.statistics.preparers[(unique, 1)].state(), b
        finally:
            await producer.stop()

    a_state, b = asyncio.run(run())
    assert _keys(bootstrap, unique) == [snapshot_key(unique, 0), snapshot_key(unique, 1)]
    assert b.statistics.origin[(unique, 1)] == "topic"
    taken = b.statistics.preparers[(unique, 1)].state()
    assert taken["rows"] == a_state["rows"] + 10  # not + 20: 20..29 were learned by A
    # Exactly the statistics of one preparer that saw partition 1's 40 events in order.
    reference = Preparer(spec)
    for value in on_1:
        reference.clean(reference.validate(reference.parse(value)))
    assert taken == reference.state()
    # Partition 0's statistics are not partition 1's: each partition learned its own rows.
    assert a_state != Preparer(spec).state() and (unique, 0) not in b.statistics.preparers


def test_a_snapshot_from_another_log_gives_its_statistics_but_not_its_offset(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """A new broker log (the embedded one restarted) starts at offset 0 again: a snapshot
    published there from an old log's record names offsets of that old log, so every
    record of the new one is learned."""
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = [json.dumps(e).encode() for e in valid_events(spec, 30)]
    old = Preparer(spec)
    for value in events[:20]:
        old.clean(old.validate(old.parse(value)))
    snapshot = {**old.state(), "partition": 0, "offset": 500, "log_epoch": "an-old-log"}

    async def run() -> Ingestion:
        await ensure_topics(bootstrap, _topics(unique))
        producer = await start_producer(bootstrap)
        try:
            await producer.send_and_wait(
                topics.stats(unique), json.dumps(snapshot).encode(), key=f"{unique}/0".encode()
            )
            fresh = ingestion_of(spec, SeenIds(tmp_path / "seen.db"), producer, bootstrap)
            for offset, value in enumerate(events[20:]):
                await fresh.process(consumer_record(topics.raw(unique), offset, value))
            await fresh.flush()
            return fresh
        finally:
            await producer.stop()

    fresh = asyncio.run(run())
    assert fresh.statistics.origin[(unique, 0)] == "topic"
    assert fresh.statistics.preparers[(unique, 0)].rows == 30  # 20 restored + 10 learned
    recorded = fresh.seen.state(state_name(unique, 0))
    assert recorded["offset"] == 10 and recorded["log_epoch"] not in (None, "an-old-log")


def test_a_clean_stop_publishes_the_newest_snapshot(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """The service's body, stopped as SIGTERM stops it, leaves ``<uc>.stats`` with every
    row it learned, though its publish interval (an hour) never came round."""
    from services.common.health import HealthServer
    from services.ingestion.service import IngestionSettings, serve

    usecases = tmp_path / "usecases"
    usecases.mkdir()
    # A use case is named by its file: credit under this test's own name.
    (usecases / f"{unique}.yaml").write_text((ROOT / "usecases" / "credit.yaml").read_text())
    spec = load_usecase(usecases / f"{unique}.yaml")
    events = [json.dumps(e).encode() for e in valid_events(spec, 30)]
    settings = IngestionSettings(
        bootstrap=bootstrap,
        home=tmp_path / "home",
        usecases_dir=usecases,
        group_prefix=unique,
        stats_publish_seconds=3600,
    )

    async def run() -> None:
        stop = asyncio.Event()
        health = HealthServer("ingestion", "127.0.0.1", 0)
        body = asyncio.create_task(serve(settings, stop, health))
        producer = await start_producer(bootstrap)
        try:
            for value in events:
                await producer.send_and_wait(topics.raw(unique), value)
        finally:
            await producer.stop()
        deadline = asyncio.get_running_loop().time() + 60
        features = topics.features(unique)
        while len(await asyncio.to_thread(read_topic, bootstrap, features)) < len(events):
            assert asyncio.get_running_loop().time() < deadline, "ingestion did not catch up"
            await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(body, 30)

    asyncio.run(run())
    snapshots = read_topic(bootstrap, topics.stats(unique))
    latest = {s["partition"]: s for s in snapshots}  # the newest snapshot of each partition
    assert sum(s["rows"] for s in latest.values()) == len(events)
    assert sum(s["offset"] for s in latest.values()) == len(events)
