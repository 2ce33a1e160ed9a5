"""Ingestion's processor on the real broker: rows first, then the seen-record, then a restart."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.usecase import UseCase, load_usecase
from services.common.bus import ensure_topics, start_producer
from services.common.errors import InvalidInput
from services.common.prep import Preparer
from services.common.seen import SeenIds
from services.common.serde import decode
from services.ingestion.processor import KIND, Ingestion
from services.ingestion.statistics import PartitionStatistics, state_name
from tests.integration.test_ingest_path import valid_events
from tests.records import consumer_record
from tests.stack import ROOT, read_topic

pytestmark = pytest.mark.integration


def ingestion_of(
    spec: UseCase, seen: SeenIds, producer: AIOKafkaProducer, bootstrap: str
) -> Ingestion:
    """Ingestion of one use case, as the service builds it (over its partitions' statistics)."""
    return Ingestion(PartitionStatistics({spec.name: spec}, seen, producer, bootstrap))


def test_events_are_recorded_after_their_rows_and_a_restart_skips_them(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = [json.dumps(e).encode() for e in valid_events(spec, 50)]
    raw = topics.raw(unique)
    seen = SeenIds(tmp_path / "seen.db")

    async def run() -> tuple[dict[str, object], dict[str, object]]:
        await ensure_topics(bootstrap, [topics.features(unique), topics.deadletter(unique)])
        producer = await start_producer(bootstrap)
        try:
            first = ingestion_of(spec, seen, producer, bootstrap)
            for offset, value in enumerate(events[:30]):
                await first.process(consumer_record(raw, offset, value))
            await first.process(consumer_record(raw, 30, events[0]))  # a duplicate in the batch
            assert seen.count(unique, KIND) == 0  # nothing recorded before the flush
            await first.flush()
            assert seen.count(unique, KIND) == 30

            # A restart: the batch is read again from the start, with 20 more events.
            second = ingestion_of(spec, seen, producer, bootstrap)
            taken = await second.statistics.preparer(unique, 0, 0)  # the partition arrives
            restored = copy.deepcopy(taken.state())
            for offset, value in enumerate(events):
                await second.process(consumer_record(raw, offset, value))
            with pytest.raises(InvalidInput, match="not valid JSON"):
                await second.process(consumer_record(raw, 50, b"{oops"))
            await second.flush()
            return first.statistics.preparers[(unique, 0)].state(), restored
        finally:
            await producer.stop()

    saved, restored = asyncio.run(run())
    assert restored == saved  # the imputation statistics came back with the record
    assert seen.count(unique, KIND) == 50
    rows = read_topic(bootstrap, topics.features(unique))
    assert sorted(r["source_event_id"] for r in rows) == sorted(
        json.loads(e)["event_id"] for e in events
    )
    # Each row is a whole FeatureRow (encoded from its fields, without the model), the
    # preparer's row of its event but for the time it was made and the features'
    # imputations (learned across the two runs).
    reference = Preparer(spec)
    by_id = {json.loads(e)["event_id"]: reference.prepare(e, learn=False) for e in events}
    for found in rows:
        row = decode(topics.FEATURES, json.dumps(found))
        expected = by_id[row.source_event_id]
        assert row.model_dump(exclude={"occurred_at", "features"}) == expected.model_dump(
            exclude={"occurred_at", "features"}
        )
        assert list(row.features) == spec.feature_names()


def test_a_batch_asks_the_seen_record_once_and_skips_what_it_holds(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = [json.dumps(e).encode() for e in valid_events(spec, 40)]
    raw = topics.raw(unique)
    seen = SeenIds(tmp_path / "seen.db")
    asked: list[int] = []
    unseen = seen.unseen

    def counted(usecase: str, kind: str, event_ids: object) -> set[str]:
        ids = list(event_ids)  # type: ignore[call-overload]
        asked.append(len(ids))
        return unseen(usecase, kind, ids)

    seen.unseen = counted  # type: ignore[method-assign]

    async def batch(ingestion: Ingestion, records: list[object]) -> list[str]:
        errors: list[str] = []
        await ingestion.begin(records)
        for record in records:
            try:
                await ingestion.process(record)
            except InvalidInput as exc:
                errors.append(exc.reason)
        await ingestion.flush()
        return errors

    async def run() -> list[str]:
        await ensure_topics(bootstrap, [topics.features(unique), topics.deadletter(unique)])
        producer = await start_producer(bootstrap)
        try:
            first = ingestion_of(spec, seen, producer, bootstrap)
            records = [consumer_record(raw, o, v) for o, v in enumerate(events[:25])]
            records.append(consumer_record(raw, 25, events[0]))  # a duplicate in the batch
            assert await batch(first, records) == []
            assert asked == [26]
            asked.clear()
            # Redelivered with 15 more and a bad one: one query, the 25 skipped.
            second = ingestion_of(spec, seen, producer, bootstrap)
            records = [consumer_record(raw, o, v) for o, v in enumerate(events)]
            records.append(consumer_record(raw, 40, b"{oops"))
            return await batch(second, records)
        finally:
            await producer.stop()

    errors = asyncio.run(run())
    assert asked == [40]
    assert len(errors) == 1 and "not valid JSON" in errors[0]
    assert seen.count(unique, KIND) == 40
    rows = read_topic(bootstrap, topics.features(unique))
    assert sorted(r["source_event_id"] for r in rows) == sorted(
        json.loads(e)["event_id"] for e in events
    )


def test_a_handed_off_batch_is_recorded_with_its_own_statistics_and_its_ids_stay_taken(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """While batch 1 is in flight (handed off, not yet recorded) batch 2 is processed:
    ids of batch 1 that come again are duplicates, and batch 1 is recorded with the
    statistics as they were after it, not after batch 2."""
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = [json.dumps(e).encode() for e in valid_events(spec, 30)]
    raw = topics.raw(unique)
    seen = SeenIds(tmp_path / "seen.db")
    name = state_name(unique, 0)

    async def run() -> tuple[dict[str, object], dict[str, object] | None, int]:
        await ensure_topics(bootstrap, [topics.features(unique), topics.deadletter(unique)])
        producer = await start_producer(bootstrap)
        try:
            ingestion = ingestion_of(spec, seen, producer, bootstrap)
            first = [consumer_record(raw, o, v) for o, v in enumerate(events[:20])]
            await ingestion.begin(first)
            for record in first:
                await ingestion.process(record)
            after_first = copy.deepcopy(ingestion.statistics.preparers[(unique, 0)].state())
            durable = await ingestion.hand_off()
            again = [consumer_record(raw, 20 + o, v) for o, v in enumerate(events[15:])]
            await ingestion.begin(again)  # 5 of batch 1's ids, then 10 new ones
            for record in again:
                await ingestion.process(record)
            assert len(ingestion.pending) == 10 and seen.count(unique, KIND) == 0
            await durable
            recorded = seen.state(name)
            counted = seen.count(unique, KIND)
            await ingestion.flush()
            return after_first, recorded, counted
        finally:
            await producer.stop()

    after_first, recorded, counted = asyncio.run(run())
    assert counted == 20
    assert recorded is not None and recorded["offset"] == 20
    assert {k: v for k, v in recorded.items() if k in after_first} == after_first
    assert seen.count(unique, KIND) == 30
    rows = read_topic(bootstrap, topics.features(unique))
    assert sorted(r["source_event_id"] for r in rows) == sorted(
        json.loads(e)["event_id"] for e in events
    )  # each once: the 5 that came again while in flight were not sent twice
