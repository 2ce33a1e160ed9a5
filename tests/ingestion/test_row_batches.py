"""Ingestion's feature rows in record batches of its own (create_batch / send_batch), on
the real broker: each row on the partition aiokafka's partitioner gives its key, in order,
over batches that fill up, and a failed send dead-letters its rows without recording them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from schemas import topics
from schemas.usecase import load_usecase
from services.common.bus import ensure_topics, start_producer
from services.common.seen import SeenIds
from services.ingestion.processor import KIND, Ingestion
from services.ingestion.statistics import PartitionStatistics
from tests.integration.test_ingest_path import valid_events
from tests.records import consumer_record
from tests.stack import ROOT, read_topic

pytestmark = pytest.mark.integration

PARTITIONS = 3


async def rows_by_partition(bootstrap: str, topic: str) -> dict[int, list[dict[str, Any]]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[int, list[dict[str, Any]]] = {}
    try:
        while batches := await consumer.getmany(timeout_ms=1000, max_records=5000):
            for partition, records in batches.items():
                found.setdefault(partition.partition, []).extend(
                    json.loads(r.value) | {"_key": r.key} for r in records
                )
    finally:
        await consumer.stop()
    return found


def test_rows_go_to_their_keys_partitions_in_order_over_full_batches(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = valid_events(spec, 120)
    raw, output = topics.raw(unique), topics.features(unique)
    seen = SeenIds(tmp_path / "seen.db")

    async def run() -> dict[int, list[dict[str, Any]]]:
        await ensure_topics(bootstrap, [output], partitions=PARTITIONS)
        await ensure_topics(bootstrap, [topics.deadletter(unique)])
        producer = await start_producer(bootstrap)
        # About three credit rows a batch: each partition's rows take many batches.
        rows = await start_producer(bootstrap, max_batch_size=4096)
        try:
            ingestion = Ingestion(
                PartitionStatistics({unique: spec}, seen, producer, bootstrap), rows
            )
            records = [
                consumer_record(raw, o, json.dumps(e).encode()) for o, e in enumerate(events)
            ]
            await ingestion.begin(records)
            for record in records:
                await ingestion.process(record)
            await ingestion.flush()
            assert not ingestion.rows.batches and not ingestion.pending
            return await rows_by_partition(bootstrap, output)
        finally:
            await rows.stop()
            await producer.stop()

    found = asyncio.run(run())
    assert seen.count(unique, KIND) == len(events)
    default = DefaultPartitioner()
    order = {e["event_id"]: index for index, e in enumerate(events)}
    assert sum(len(rows) for rows in found.values()) == len(events)
    assert len(found) == PARTITIONS
    for partition, rows in found.items():
        for row in rows:
            assert row["_key"] == row["entity_id"].encode()
            assert default(row["_key"], [0, 1, 2], [0, 1, 2]) == partition
        positions = [order[row["source_event_id"]] for row in rows]
        assert positions == sorted(positions)  # each partition's rows in processing order


def test_a_batch_that_cannot_be_sent_dead_letters_its_rows_and_records_none(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = valid_events(spec, 10)
    raw = topics.raw(unique)
    seen = SeenIds(tmp_path / "seen.db")

    async def run() -> None:
        await ensure_topics(bootstrap, [topics.features(unique), topics.deadletter(unique)])
        producer = await start_producer(bootstrap)
        rows = await start_producer(bootstrap)
        try:
            statistics = PartitionStatistics({unique: spec}, seen, producer, bootstrap)
            ingestion = Ingestion(statistics, rows)
            for offset, event in enumerate(events):
                await ingestion.process(consumer_record(raw, offset, json.dumps(event).encode()))
            await rows.stop()  # the rows' producer is gone before the batch is sent
            await ingestion.flush()
        finally:
            await producer.stop()

    asyncio.run(run())
    assert seen.count(unique, KIND) == 0  # read again after a restart, not lost
    dead = read_topic(bootstrap, topics.deadletter(unique))
    assert sorted(d["offset"] for d in dead) == list(range(len(events)))
    assert {d["service"] for d in dead} == {"ingestion"}
    assert read_topic(bootstrap, topics.features(unique)) == []
