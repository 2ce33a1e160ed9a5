"""The at-least-once consume loop for plain aiokafka consumers.

Read a batch, hand each message to the processor, let the processor make its
side effects durable (``flush``), and only then commit the offsets. A crash
anywhere before the commit redelivers the batch; processors are idempotent
by ``event_id``, so the redelivery changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from services.common.deadletter import ErrorPolicy

logger = logging.getLogger(__name__)


class Processor(Protocol):
    """What a consume loop drives."""

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        """Handle one message; raise to hand it to the error policy."""

    async def flush(self) -> None:
        """Make the side effects of every processed message durable."""


class ConsumeLoop:
    """Consume ``consumer`` into ``processor`` until ``stop`` is set."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        processor: Processor,
        policy: ErrorPolicy,
        *,
        max_records: int = 1000,
        poll_timeout_ms: int = 200,
        before_commit: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.consumer = consumer
        self.processor = processor
        self.policy = policy
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.before_commit = before_commit
        self.processed = 0

    async def run_once(self) -> int:
        """Process and commit one batch; return how many messages it held."""
        batches = await self.consumer.getmany(
            timeout_ms=self.poll_timeout_ms, max_records=self.max_records
        )
        count = 0
        for records in batches.values():
            for record in records:
                try:
                    await self.processor.process(record)
                except Exception as exc:
                    await self.policy.on_error(exc, record)
                count += 1
        if count:
            await self.processor.flush()
            self.processed += count
            if self.before_commit is not None:
                await self.before_commit(self.processed)
            await self.consumer.commit()
        return count

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.run_once()
