"""The dead-letter policy, driven by a real consume loop on the embedded broker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from schemas.events import DeadLetter
from services.cli.publish import publish_objects
from services.common.bus import start_consumer, start_producer
from services.common.consume import ConsumeLoop
from services.common.deadletter import DeadLetterPolicy
from services.common.errors import InvalidInput, TransientError
from services.common.serde import decode, decode_object

pytestmark = pytest.mark.integration


class Picky:
    """Accepts objects with an even ``n``; rejects the rest; fails transiently on 'flaky'."""

    def __init__(self) -> None:
        self.accepted: list[int] = []

    async def process(self, record: Any) -> None:
        value = decode_object(record.value)
        if value.get("flaky"):
            raise TransientError("store briefly down")
        if value["n"] % 2:
            raise InvalidInput(
                f"field 'n': expected an even number, got {value['n']}", event_id="x"
            )
        self.accepted.append(value["n"])

    async def flush(self) -> None:
        pass


async def read_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = await start_consumer(bootstrap, [topic], None)
    found: list[bytes] = []
    try:
        while len(found) < count:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 20)
            found += [r.value for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return found


async def run_loop(bootstrap: str, topic: str, expect: int) -> tuple[Picky, DeadLetterPolicy]:
    consumer = await start_consumer(bootstrap, [topic], f"{topic}-g")
    producer = await start_producer(bootstrap)
    picky = Picky()
    policy = DeadLetterPolicy("picky", producer)
    loop = ConsumeLoop(consumer, picky, policy)
    try:
        while loop.processed < expect:
            await loop.run_once()
    finally:
        await consumer.stop()
        await producer.stop()
    return picky, policy


def test_bad_input_goes_to_the_deadletter_topic_with_its_reason(
    bootstrap: str, make_topics, unique: str
) -> None:
    raw, dead = make_topics(f"{unique}.raw", f"{unique}.deadletter")
    asyncio.run(publish_objects(bootstrap, raw, [{"n": n} for n in range(6)]))
    picky, policy = asyncio.run(run_loop(bootstrap, raw, 6))
    assert picky.accepted == [0, 2, 4]
    assert policy.count == 3
    letters = [decode(dead, m) for m in asyncio.run(read_all(bootstrap, dead, 3))]
    assert all(isinstance(letter, DeadLetter) for letter in letters)
    first = letters[0]
    assert isinstance(first, DeadLetter)
    assert first.usecase == unique
    assert first.service == "picky"
    assert first.reason == "field 'n': expected an even number, got 1"
    assert json.loads(first.payload) == {"n": 1}
    assert (first.topic, first.partition, first.offset) == (raw, 0, 1)
    assert first.error_type == "InvalidInput"


def test_a_transient_error_is_not_dead_lettered_and_not_committed(
    bootstrap: str, make_topics, unique: str
) -> None:
    raw, _ = make_topics(f"{unique}.raw", f"{unique}.deadletter")
    asyncio.run(publish_objects(bootstrap, raw, [{"n": 0}, {"n": 2, "flaky": True}]))
    with pytest.raises(TransientError):
        asyncio.run(run_loop(bootstrap, raw, 2))

    async def committed() -> int | None:
        consumer = await start_consumer(bootstrap, [raw], f"{raw}-g")
        try:
            partition = next(iter(consumer.assignment()))
            return await consumer.committed(partition)
        finally:
            await consumer.stop()

    assert asyncio.run(committed()) is None  # the batch will be read again
