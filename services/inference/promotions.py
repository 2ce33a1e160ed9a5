"""The promotion listener: replays ``models.promotions`` at start, then follows it.

The topic's whole history is read at start (no consumer group, no committed
offset: the history is the source of truth for who serves), folded into
each use case's lineup and loaded; after that every new event is applied
live by :meth:`LoadedModels.apply`. A message that is not a promotion is
logged and skipped: it is the writer's mistake, and it changes no lineup.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer

from schemas.events import Promotion
from services.common.bus import read_to_end
from services.common.promotions.log import as_promotion
from services.inference.loaded import LoadedModels

logger = logging.getLogger(__name__)


class PromotionListener:
    """Feeds the loaded models from a consumer assigned to ``models.promotions``."""

    def __init__(
        self, consumer: AIOKafkaConsumer, models: LoadedModels, poll_timeout_ms: int = 500
    ) -> None:
        self.consumer = consumer
        self.models = models
        self.poll_timeout_ms = poll_timeout_ms
        self.applied = 0

    async def read_history(self) -> list[Promotion]:
        """Every promotion on the topic now, oldest first.

        Several partitions have no order between them, so the history is sorted
        (stably: one partition's order is kept for equal times) by ``occurred_at``.
        """
        history: list[Promotion] = []
        replay = read_to_end(self.consumer, from_beginning=True, timeout_ms=self.poll_timeout_ms)
        async for record in replay:
            if (promotion := as_promotion(record)) is not None:
                history.append(promotion)
        return sorted(history, key=lambda promotion: promotion.occurred_at)

    async def replay(self) -> int:
        """Rebuild and load every lineup from the history; return how many events it held."""
        history = await self.read_history()
        await self.models.replay(history)
        logger.info("promotions replayed events=%d", len(history))
        return len(history)

    async def run(self, stop: asyncio.Event) -> None:
        """Apply new promotions until ``stop`` is set."""
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=self.poll_timeout_ms)
            for records in batches.values():
                for record in records:
                    promotion = as_promotion(record)
                    if promotion is not None and await self.models.apply(promotion):
                        self.applied += 1
