"""The at-least-once consume loop for plain aiokafka consumers.

Read a batch, hand each message to the processor, let the processor make its
side effects durable (``flush``), and only then commit the offsets. A crash
anywhere before the commit redelivers the batch; processors are idempotent
by ``event_id``, so the redelivery changes nothing.

Each commit carries the log epoch as its metadata (services/common/epoch.py).
A commit names offsets of one log; :func:`start_at_committed` uses only
the commits of the broker's current log, so a commit that reached a new
broker from an old log's batch (the broker died mid-batch and came back
empty) is not taken for a position in the new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from services.common.checkpoint import offset_key, resume, save_text
from services.common.deadletter import ErrorPolicy
from services.common.epoch import log_epoch
from services.common.settings import CommonSettings

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
        epoch: str = "",
    ) -> None:
        self.consumer = consumer
        self.processor = processor
        self.policy = policy
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.before_commit = before_commit
        self.epoch = epoch
        self.processed = 0

    async def run_once(self) -> int:
        """Process and commit one batch; return how many messages it held."""
        batches = await self.consumer.getmany(
            timeout_ms=self.poll_timeout_ms, max_records=self.max_records
        )
        count = 0
        nexts: dict[TopicPartition, OffsetAndMetadata] = {}
        for partition, records in batches.items():
            for record in records:
                try:
                    await self.processor.process(record)
                except Exception as exc:
                    await self.policy.on_error(exc, record)
                count += 1
            if records:
                nexts[partition] = OffsetAndMetadata(records[-1].offset + 1, self.epoch)
        if count:
            await self.processor.flush()
            self.processed += count
            if self.before_commit is not None:
                await self.before_commit(self.processed)
            await self.consumer.commit(nexts)
        return count

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.run_once()


async def committed_offsets(
    bootstrap: str, group: str, partitions: list[TopicPartition], epoch: str
) -> dict[str, int]:
    """The group's committed offsets that were committed on the log ``epoch``.

    A commit without an epoch (written before epochs existed) is trusted.
    """
    if not partitions:
        return {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    return {
        offset_key(tp.topic, tp.partition): committed.offset
        for tp, committed in found.items()
        if committed.offset >= 0 and committed.metadata in ("", epoch)
    }


async def start_at_committed(
    consumer: AIOKafkaConsumer,
    bootstrap: str,
    group: str,
    epoch: str,
    *,
    owner: str,
    new_log: bool = False,
) -> dict[str, int]:
    """Seek an assigned consumer to its group's commits on this log, else the log's beginning.

    ``new_log``: this service last ran on another log, so no commit is its own
    (one may have reached the new broker from the old log's last batch).
    In ``group`` mode the coordinator hands out positions at each rebalance,
    and the group's commits are used as they are.
    """
    partitions = sorted(consumer.assignment())
    offsets = {} if new_log else await committed_offsets(bootstrap, group, partitions, epoch)
    starts = await resume(consumer, offsets, owner=owner)
    logger.info("%s resuming log_epoch=%s offsets=%s", owner, epoch, starts)
    return starts


async def resume_committed(
    consumer: AIOKafkaConsumer, settings: CommonSettings, service: str
) -> str:
    """Position a service's committed consumer on the current log; return the log's epoch.

    The epoch this service last ran on is kept in ``DRIFTLINE_HOME/<service>/log_epoch``:
    tansu drops a commit's metadata (it reads back empty, measured), so a commit
    cannot say by itself which log it was made on.
    """
    epoch = await log_epoch(settings.bootstrap)
    marker = settings.service_home(service) / "log_epoch"
    last = marker.read_text().strip() if marker.exists() else None
    new_log = last is not None and last != epoch
    if new_log:
        logger.warning(
            "new broker log: %s last ran on log %s, the broker's is %s; reading it from its "
            "beginning (commits that reached it from the old log are not ours)",
            service, last, epoch,
        )  # fmt: skip
    if settings.consumer_mode == "assign":
        group = settings.consumer_group(service)
        await start_at_committed(
            consumer, settings.bootstrap, group, epoch, owner=service, new_log=new_log
        )
    save_text(marker, epoch)
    return epoch
