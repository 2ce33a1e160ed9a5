"""The consume loop on the real broker: a batch processor sees the batch first."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.common.bus import ensure_topics, start_consumer, start_producer
from services.common.consume import ConsumeLoop
from services.common.deadletter import DeadLetterPolicy

pytestmark = pytest.mark.integration


class Recorder:
    """Notes, in order, what the loop hands it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[bytes]]] = []

    async def begin(self, records: list[Any]) -> None:
        self.calls.append(("begin", [r.value for r in records]))

    async def process(self, record: Any) -> None:
        self.calls.append(("process", [record.value]))

    async def flush(self) -> None:
        self.calls.append(("flush", []))


def test_begin_gets_the_whole_batch_before_any_process(bootstrap: str, unique: str) -> None:
    topic = f"{unique}.consume"
    values = [f"m{i}".encode() for i in range(5)]

    async def run() -> Recorder:
        await ensure_topics(bootstrap, [topic])
        producer = await start_producer(bootstrap)
        consumer = await start_consumer(bootstrap, [topic], f"{topic}-g")
        recorder = Recorder()
        loop = ConsumeLoop(consumer, recorder, DeadLetterPolicy("recorder", producer))
        try:
            await asyncio.gather(*[await producer.send(topic, v) for v in values])
            while loop.processed < len(values):
                await loop.run_once()
        finally:
            await consumer.stop()
            await producer.stop()
        return recorder

    calls = asyncio.run(run()).calls
    batches: list[list[bytes]] = []
    for index, (kind, seen) in enumerate(calls):
        if kind == "begin":
            batches.append(seen)
            following = [v for k, vs in calls[index + 1 : index + 1 + len(seen)] for v in vs]
            assert following == seen  # process, record by record, in the batch's order
            assert calls[index + 1 + len(seen)][0] == "flush"
    assert [v for batch in batches for v in batch] == values
