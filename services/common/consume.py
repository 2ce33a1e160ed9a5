"""The at-least-once consume loop for plain aiokafka consumers.

Read a batch, hand each message to the processor, let the processor make its
side effects durable (``flush``), and only then commit the offsets. A crash
anywhere before the commit redelivers the batch; processors are idempotent
by ``event_id``, so the redelivery changes nothing.

A processor that can hand a batch off (:class:`HandingProcessor`: ingestion,
the features service) is pipelined: while batch N's side effects are made
durable (rows acknowledged, stores written), the loop reads and processes
batch N+1; N's offsets, exactly those of its records, are committed once N is
durable, and N+1's side effects are started only after that. So at most one
batch is in flight, batches become durable in their order, and a crash still
leaves every record either durable or uncommitted. What is in flight is one
batch's wait (acknowledgements, a store write in a worker thread) that the
next batch's reading no longer waits behind.

A commit names offsets of one log. :func:`resume_committed` uses the group's
commits only when the service last ran on the broker's current log, so a
commit that reached a new broker from an old log's batch (the broker died
mid-batch and came back empty) is not taken for a position in the new one.

A service whose checkpoint holds its offsets (the online trainer, the drift
detector) gives the loop ``checkpointed``: the loop, not the processor, moves
the checkpoint's offset past each record before handing it over, and
:func:`resume_checkpointed` seeks the consumer where the checkpoints say.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord, TopicPartition

from services.common.checkpoint import offset_key, resume, save_text
from services.common.deadletter import DeadLetterPolicy, ErrorPolicy
from services.common.epoch import Checkpointed, adopt, log_epoch
from services.common.lag import observe_lag
from services.common.settings import CommonSettings

logger = logging.getLogger(__name__)

# The checkpointed offsets a record's topic belongs to (None: not checkpointed).
CheckpointedOffsets = Callable[[str], MutableMapping[str, int] | None]


class Processor(Protocol):
    """What a consume loop drives."""

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        """Handle one message; raise to hand it to the error policy."""

    async def flush(self) -> None:
        """Make the side effects of every processed message durable."""


class BatchProcessor(Processor, Protocol):
    """A processor that also looks at a whole batch before its messages (one query
    for all of them, say); the loop calls ``begin`` when the processor has it."""

    async def begin(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        """See the batch's messages, in order, before ``process`` gets each; must not raise
        for one message (``process`` raises for it)."""


class HandingProcessor(Processor, Protocol):
    """A processor whose batch can be made durable while it processes the next one."""

    async def hand_off(self) -> Awaitable[None]:
        """Take every processed message's side effects out of the processor and return
        what makes them durable; the processor takes the next batch's messages before
        that is awaited, and sees them as it would after it (``flush`` is both at once)."""


@dataclass(eq=False)
class ConsumeLoop:
    """Consume ``consumer`` into ``processor`` until ``stop`` is set."""

    consumer: AIOKafkaConsumer
    processor: Processor
    policy: ErrorPolicy
    _: KW_ONLY
    max_records: int = 1000
    poll_timeout_ms: int = 200
    before_commit: Callable[[int], Awaitable[None]] | None = None
    checkpointed: CheckpointedOffsets | None = None
    processed: int = field(default=0, init=False)  # messages handed over, all batches

    _in_flight: asyncio.Task[None] | None = field(default=None, init=False)

    async def run_once(self) -> int:
        """Process one batch and return how many messages it held; its offsets are
        committed once it is durable (here, or for a handing processor, at the latest
        in the next call, while that one reads)."""
        batches = await self.consumer.getmany(
            timeout_ms=self.poll_timeout_ms, max_records=self.max_records
        )
        await observe_lag(self.consumer)
        begin = getattr(self.processor, "begin", None)
        if begin is not None and batches:
            await begin([record for records in batches.values() for record in records])
        count = 0
        for records in batches.values():
            for record in records:
                offsets = None if self.checkpointed is None else self.checkpointed(record.topic)
                if offsets is not None:  # first: a record that is dead-lettered is consumed too
                    offsets[offset_key(record.topic, record.partition)] = record.offset + 1
                try:
                    await self.processor.process(record)
                except Exception as exc:
                    await self.policy.on_error(exc, record)
                count += 1
        hand_off = getattr(self.processor, "hand_off", None)
        if hand_off is None:
            if count:
                await self.processor.flush()
                self.processed += count
                await self._commit(None)
            return count
        durable = await hand_off() if count else None
        try:
            await self.settle()  # the previous batch: durable and committed before this starts
        except BaseException:
            if asyncio.iscoroutine(durable):
                durable.close()  # never started: this batch stays uncommitted
            raise
        if durable is not None:
            self.processed += count
            ends = {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
            self._in_flight = asyncio.create_task(self._finish(durable, ends))
        return count

    async def settle(self) -> None:
        """Wait until the batch in flight is durable and committed (raises what it raised)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight

    async def _finish(self, durable: Awaitable[None], ends: dict[TopicPartition, int]) -> None:
        await durable
        await self._commit(ends)

    async def _commit(self, ends: dict[TopicPartition, int] | None) -> None:
        """Commit ``ends`` (None: everything consumed). In a group whose partitions moved
        meanwhile the commit is refused: the batch's records go to their new holder from
        the last commit, which skips what the processor recorded (idempotent by id)."""
        if self.before_commit is not None:
            await self.before_commit(self.processed)
        try:
            await (self.consumer.commit() if ends is None else self.consumer.commit(ends))
        except (CommitFailedError, IllegalStateError) as exc:
            logger.warning("offsets not committed, the group's partitions moved: %s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.run_once()
            await self.settle()
        finally:
            if self._in_flight is not None:  # cancelled, or a batch failed: left uncommitted
                self._in_flight.cancel()
                await asyncio.wait({self._in_flight})


class BatchSettings(Protocol):
    """A service's consumed batch: how many records at most, how long a poll waits."""

    @property
    def max_records(self) -> int: ...

    @property
    def poll_timeout_ms(self) -> int: ...


def checkpointed_loop(
    consumer: AIOKafkaConsumer,
    processor: Processor,
    producer: AIOKafkaProducer,
    settings: BatchSettings,
    *,
    service: str,
    checkpointed: CheckpointedOffsets,
) -> ConsumeLoop:
    """The loop of a service whose checkpoint holds its offsets; errors go to dead letters."""
    return ConsumeLoop(
        consumer,
        processor,
        DeadLetterPolicy(service, producer),
        max_records=settings.max_records,
        poll_timeout_ms=settings.poll_timeout_ms,
        checkpointed=checkpointed,
    )


async def resume_committed(
    consumer: AIOKafkaConsumer, settings: CommonSettings, service: str
) -> None:
    """Position a service's committed consumer on the current log.

    The epoch this service last ran on is kept in ``DRIFTLINE_HOME/<service>/log_epoch``.
    On the same log an assigned consumer resumes from its group's commits; on
    another, from the log's beginning (a commit cannot tell which log it was
    made on: tansu drops commit metadata, measured). In ``group`` mode the
    coordinator hands out positions at each rebalance, and they are used as
    they are.
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
        offsets: dict[str, int] = {}
        if not new_log:
            for partition in consumer.assignment():
                committed = await consumer.committed(partition)
                if committed is not None:
                    offsets[offset_key(partition.topic, partition.partition)] = committed
        starts = await resume(consumer, offsets, owner=service)
        logger.info("%s resuming log_epoch=%s offsets=%s", service, epoch, starts)
    save_text(marker, epoch)


async def resume_checkpointed(
    consumer: AIOKafkaConsumer,
    states: Mapping[str, Checkpointed],
    bootstrap: str,
    *,
    owner: str,
    positions: Mapping[str, int] | None = None,
) -> str:
    """Seek every partition where its checkpointed state says the next record is; return the epoch.

    On a log other than a checkpoint's (a broker that forgot its log) the
    learned state is kept and the new log is read from its beginning.
    ``positions`` are starts of partitions no checkpoint holds (``topic:partition``).
    """
    epoch = await log_epoch(bootstrap)
    offsets = adopt(states, epoch, owner=owner)
    offsets.update(positions or {})
    starts = await resume(consumer, offsets, owner=owner)
    logger.info("%s resuming log_epoch=%s offsets=%s", owner, epoch, starts)
    return epoch
