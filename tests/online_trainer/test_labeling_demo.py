"""``driftline demo --labels requested`` answers the label requests, and nothing else."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from schemas import topics
from schemas.events import LabelRequest
from schemas.usecase import load_usecase
from services.cli.demo import stream_demo
from services.common.bus import ensure_topics, start_consumer, start_producer
from services.common.serde import encode

pytestmark = pytest.mark.integration


async def read_values(bootstrap: str, topic: str) -> list[dict[str, object]]:
    consumer = await start_consumer(bootstrap, [topic], None)
    try:
        await consumer.seek_to_beginning()
        found = []
        while batches := await consumer.getmany(timeout_ms=500):
            for records in batches.values():
                found.extend(json.loads(r.value) for r in records)
        return found
    finally:
        await consumer.stop()


def asking(usecase: str, source_event_id: str) -> LabelRequest:
    return LabelRequest(
        usecase=usecase, source_event_id=source_event_id, entity_id="c1", prediction_id="p1",
        model_name=f"{usecase}-online", model_version="1", variant="champion", prediction=1,
        predicted_at=datetime.now(UTC), strategy="margin", uncertainty=0.9, rank=1,
        candidates=10, budget_per_hour=200, reason="margin 0.900: the most uncertain of 10",
    )  # fmt: skip


async def test_the_demo_labels_only_the_requested_events(bootstrap: str, unique: str) -> None:
    credit = load_usecase("usecases/credit.yaml")
    assert credit.active_learning is not None
    policy = credit.active_learning.model_copy(update={"interval_seconds": 1.0})
    spec = credit.model_copy(update={"name": unique, "active_learning": policy})
    await ensure_topics(bootstrap, [topics.raw(unique), topics.label_requests(unique)])
    demo = asyncio.create_task(
        stream_demo(
            bootstrap, spec, events=30, rate=0, seed=3, drift_at=None, label_delay=0.0,
            label_mode="requested",
        )
    )  # fmt: skip
    raw: list[dict[str, object]] = []
    for _ in range(100):  # the demo publishes its 30 events at once, then waits for requests
        raw = await read_values(bootstrap, topics.raw(unique))
        if len(raw) == 30:
            break
        await asyncio.sleep(0.1)
    wanted = [str(raw[i]["event_id"]) for i in (2, 11, 29)]
    producer = await start_producer(bootstrap)
    try:
        for source in [*wanted, "not-one-of-the-demo-events"]:
            request = asking(unique, source)
            await producer.send_and_wait(topics.label_requests(unique), encode(request))
    finally:
        await producer.stop()
    summary = await asyncio.wait_for(demo, timeout=60)

    labels = await read_values(bootstrap, topics.labels(unique))
    assert sorted(str(label["event_id"]) for label in labels) == sorted(wanted)
    assert summary.labels == 3 and summary.events == 30
