"""Reading ``models.promotions``: the replay at start, then following it live.

The history consumer has no group and commits nothing: every start replays
the topic from its beginning, which is what makes the history the source of
truth. :func:`read_history` is the one-shot replay the command line uses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import topics
from schemas.events import Promotion
from services.common.bus import ensure_topics, read_to_end, start_consumer
from services.common.errors import InvalidInput
from services.common.promotions.history import PromotionHistory
from services.common.serde import decode

logger = logging.getLogger(__name__)

OnPromotion = Callable[[Promotion], Awaitable[None]]


def as_promotion(record: Any) -> Promotion | None:
    """The promotion a record of ``models.promotions`` carries, or None (logged) for anything else.

    Anything else is its writer's mistake, and it changes no lineup.
    """
    try:
        return decode(topics.PROMOTIONS, record.value)
    except InvalidInput as exc:
        logger.warning("skipped topic=%s partition=%s offset=%s: %s",
                       record.topic, record.partition, record.offset, exc)  # fmt: skip
        return None


class PromotionLog:
    """A consumer of the whole promotion history, handing each event to ``on_promotion``."""

    def __init__(self, consumer: AIOKafkaConsumer, on_promotion: OnPromotion) -> None:
        self.consumer = consumer
        self.on_promotion = on_promotion
        self.read = 0

    @classmethod
    async def open(cls, bootstrap: str, on_promotion: OnPromotion) -> PromotionLog:
        consumer = await start_consumer(bootstrap, [topics.MODELS_PROMOTIONS], None)
        await consumer.seek_to_beginning(*consumer.assignment())
        return cls(consumer, on_promotion)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def _apply(self, record: Any) -> None:
        event = as_promotion(record)
        if event is not None:
            await self.on_promotion(event)
        self.read += 1

    async def poll(self, timeout_ms: int = 0) -> int:
        """Apply whatever new events are there (the command line's, another instance's)."""
        count = 0
        for records in (await self.consumer.getmany(timeout_ms=timeout_ms)).values():
            for record in records:
                await self._apply(record)
                count += 1
        return count

    async def catch_up(self, targets: dict[TopicPartition, int] | None = None) -> None:
        """Read until each partition's position reaches ``targets`` (the end offsets if None)."""
        async for record in read_to_end(self.consumer, targets):
            await self._apply(record)


async def read_history(bootstrap: str) -> PromotionHistory:
    """The whole promotion history, folded (one replay, for the command line)."""
    history = PromotionHistory()
    await ensure_topics(bootstrap, [topics.MODELS_PROMOTIONS])

    async def apply(event: Promotion) -> None:
        history.apply(event)

    log = await PromotionLog.open(bootstrap, apply)
    try:
        await log.catch_up()
    finally:
        await log.stop()
    return history
