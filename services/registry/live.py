"""The live feed: ``<uc>.predictions`` and ``<uc>.labels`` into the registry's trials.

Uncommitted, so that a trial running when the service stopped is rebuilt by
reading its use case's topics again from the beginning; with no trial
running, only what comes next counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer

from schemas import topics
from services.common.bus import start_consumer

if TYPE_CHECKING:
    from services.registry.promoter import Registry


class LiveFeed:
    """The uncommitted consumer of predictions and labels of the served use cases."""

    def __init__(self, consumer: AIOKafkaConsumer, registry: Registry) -> None:
        self.consumer = consumer
        self.registry = registry

    @classmethod
    async def open(cls, bootstrap: str, registry: Registry) -> LiveFeed:
        names = [t for uc in registry.served for t in (topics.predictions(uc), topics.labels(uc))]
        consumer = await start_consumer(bootstrap, names, None)
        # A running trial is rebuilt from the beginning; otherwise only what comes next counts.
        rebuild = [tp for tp in consumer.assignment()
                   if topics.usecase_of(tp.topic) in registry.trials]  # fmt: skip
        rest = [tp for tp in consumer.assignment() if tp not in rebuild]
        if rebuild:
            await consumer.seek_to_beginning(*rebuild)
        if rest:
            await consumer.seek_to_end(*rest)
        return cls(consumer, registry)

    async def poll(self, timeout_ms: int) -> int:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        count = 0
        for records in batches.values():
            for record in records:
                self.registry.on_live(record)
                count += 1
        if count:
            await self.registry.judge_trials()
        return count
