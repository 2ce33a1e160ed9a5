"""Ingestion publishes the statistics it recorded, only when they changed, and again at start."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from schemas import topics
from schemas.usecase import load_usecase
from services.common.bus import ensure_topics, start_producer
from services.common.seen import SeenIds
from services.ingestion.processor import Ingestion, state_name
from tests.integration.test_ingest_path import valid_events
from tests.records import consumer_record
from tests.stack import ROOT, read_topic

pytestmark = pytest.mark.integration


def test_recorded_statistics_are_published_once_per_change_and_at_start(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = [json.dumps(e).encode() for e in valid_events(spec, 20)]
    raw = topics.raw(unique)
    seen = SeenIds(tmp_path / "seen.db")

    async def run() -> list[int]:
        names = [topics.features(unique), topics.deadletter(unique), topics.stats(unique)]
        await ensure_topics(bootstrap, names)
        producer = await start_producer(bootstrap)
        try:
            first = Ingestion({unique: spec}, seen, producer)
            sent = [await first.statistics.publish()]  # nothing recorded yet
            for offset, value in enumerate(events[:10]):
                await first.process(consumer_record(raw, offset, value))
            sent.append(await first.statistics.publish())  # processed, not yet recorded
            await first.flush()
            sent += [await first.statistics.publish(), await first.statistics.publish()]
            for offset, value in enumerate(events[10:], start=10):
                await first.process(consumer_record(raw, offset, value))
            await first.flush()
            sent.append(await first.statistics.publish())
            restarted = Ingestion({unique: spec}, seen, producer)  # the record, published at once
            sent.append(await restarted.statistics.publish())
            return sent
        finally:
            await producer.stop()

    assert asyncio.run(run()) == [0, 0, 1, 0, 1, 1]
    snapshots = read_topic(bootstrap, topics.stats(unique))
    assert [s["rows"] for s in snapshots] == [10, 20, 20]
    assert snapshots[-1] == seen.state(state_name(unique))
    assert snapshots[-1]["usecase"] == unique
