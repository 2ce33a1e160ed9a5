"""``driftline_consumer_lag``: set by the consume loop per partition, on the real broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from services.common.bus import start_consumer, start_producer
from services.common.consume import ConsumeLoop
from services.common.lag import CONSUMER_LAG

pytestmark = pytest.mark.integration


class Keep:
    """A processor that keeps nothing; an error policy that never sees an error."""

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def on_error(self, exc: Exception, record: ConsumerRecord[Any, Any]) -> None:
        raise exc


def lag(topic: str) -> dict[str, float]:
    """The gauge's value per partition of ``topic`` (absent partitions left out)."""
    return {
        sample.labels["partition"]: sample.value
        for metric in CONSUMER_LAG.collect()
        for sample in metric.samples
        if sample.labels["topic"] == topic
    }


def test_the_loop_sets_each_partitions_lag_and_drops_a_partition_it_no_longer_holds(
    bootstrap: str, make_topics: Any, unique: str
) -> None:
    (topic,) = make_topics(f"{unique}.raw", partitions=2)

    async def run() -> list[dict[str, float]]:
        producer = await start_producer(bootstrap)
        try:
            for index in range(10):  # all on partition 0; partition 1 stays empty
                await producer.send_and_wait(topic, f"{index}".encode(), partition=0)
        finally:
            await producer.stop()
        consumer = await start_consumer(bootstrap, [topic], f"{unique}-group")
        seen: list[dict[str, float]] = []
        try:
            loop = ConsumeLoop(consumer, Keep(), Keep(), max_records=4, poll_timeout_ms=2000)
            while loop.processed < 4:
                await loop.run_once()
            seen.append(lag(topic))
            while loop.processed < 10:
                await loop.run_once()
            await loop.run_once()  # nothing new: the last fetch knows the end
            seen.append(lag(topic))
            consumer.assign([])  # as a rebalance takes partitions away
            await loop.run_once()
            seen.append(lag(topic))
        finally:
            await consumer.stop()
        return seen

    first, caught_up, handed_over = asyncio.run(run())
    assert first["0"] == 6.0 and first.get("1", 0.0) == 0.0  # 10 on partition 0, 4 handed over
    assert caught_up == {"0": 0.0, "1": 0.0}
    assert handed_over == {}
