"""Feature rows on their way to ``<uc>.features``: one record batch a partition, shipped
whole and in order, without the consume loop waiting for the broker.

aiokafka's producer queues one record batch a partition: ``send_batch`` of a second
waits until the sender has taken the first, which is after the broker answered the
request before it (one request a broker in flight). Ingestion used to wait there
whenever a partition's batch filled up (a 2,000-event batch of credit rows is about
2.4 MB, three 1 MiB record batches), so reading stopped for a round trip to the
broker each time (about 0.2 s of 1.1 s in B1's 20,000-event run, timed). Here each
filled batch is handed to a delivery task that waits its turn behind the partition's
previous batch, so rows keep their partition's order, and ``process`` goes on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import ConsumerRecord


class KeyPartitioner:
    """aiokafka's default partitioner, each key's murmur2 hash remembered (entity ids
    repeat; aiokafka's pure-Python hash was about 3% of ingestion's time, cProfile).

    >>> partitioner, default = KeyPartitioner(), DefaultPartitioner()
    >>> [partitioner(b"cust-1", [0, 1, 2], [0, 1, 2]) for _ in range(2)] == [
    ...     default(b"cust-1", [0, 1, 2], [0, 1, 2])] * 2
    True
    """

    def __init__(self, remembered: int = 100_000) -> None:
        self.remembered = remembered
        self.hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:  # a random partition, as aiokafka's
            chosen: int = DefaultPartitioner()(key, all_partitions, available)
            return chosen
        index = self.hashes.get(key)
        if index is None:
            if len(self.hashes) >= self.remembered:
                self.hashes.clear()
            index = self.hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[index % len(all_partitions)]


@dataclass(slots=True)
class Sent:
    """A row on its way: the raw record it came from and, once its batch is shipped, the
    delivery of that batch (done when the broker has answered it)."""

    record: ConsumerRecord[Any, Any]
    usecase: str
    event_id: str
    ack: asyncio.Future[Any] | None = None


@dataclass(slots=True)
class RowBatch:
    """The feature rows of one partition, appended to a record batch of the rows'
    producer (``create_batch``) and sent whole (``send_batch``): one future a batch,
    not aiokafka's send, partitioner call and future a row (about 7 us of the 36 us
    that ingestion's ``process`` took a credit event, in process)."""

    topic: str
    partition: int
    builder: BatchBuilder
    rows: list[Sent]


class RowSender:
    """Appends rows to their key's partition's batch and ships each batch when it is
    full or ``ship_all`` is called; every row's ``ack`` is its batch's delivery."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.partitioner = KeyPartitioner()
        # The rows not yet shipped, by (topic, partition); a row's partition is the one
        # aiokafka's default partitioner gives its key.
        self.batches: dict[tuple[str, int], RowBatch] = {}
        self._partitions: dict[str, list[int]] = {}  # each topic's, asked once a batch
        # Each partition's last shipped batch: done once it is in the producer's queue.
        self._queued: dict[tuple[str, int], asyncio.Future[None]] = {}

    async def append(self, topic: str, key: bytes, value: bytes, sent: Sent) -> None:
        """Add one row to its partition's batch, shipping that first if it is full."""
        partitions = self._partitions.get(topic)
        if partitions is None:  # as aiokafka's send: the partitions its metadata knows
            known = await self.producer.partitions_for(topic)
            partitions = self._partitions[topic] = sorted(known)
        partition = self.partitioner(key, partitions, partitions)
        batch = self.batches.get((topic, partition))
        if batch is None:
            batch = self._open(topic, partition)
        if batch.builder.append(timestamp=None, key=key, value=value) is None:  # full
            self._ship(batch)
            batch = self._open(topic, partition)
            batch.builder.append(timestamp=None, key=key, value=value)  # a first always fits
        batch.rows.append(sent)

    def ship_all(self) -> None:
        """Ship every partition's batch (the partitions are asked again next batch)."""
        for batch in list(self.batches.values()):
            self._ship(batch)
        self._partitions.clear()

    def _open(self, topic: str, partition: int) -> RowBatch:
        batch = RowBatch(topic, partition, self.producer.create_batch(), [])
        self.batches[(topic, partition)] = batch
        return batch

    def _ship(self, batch: RowBatch) -> None:
        where = (batch.topic, batch.partition)
        del self.batches[where]
        if not batch.rows:
            return
        queued = asyncio.get_running_loop().create_future()
        delivery = asyncio.ensure_future(self._deliver(batch, self._queued.get(where), queued))
        self._queued[where] = queued
        for sent in batch.rows:
            sent.ack = delivery

    async def _deliver(
        self, batch: RowBatch, before: asyncio.Future[None] | None, queued: asyncio.Future[None]
    ) -> None:
        """Send the batch once the partition's previous one is queued; done when the
        broker has answered (a send that fails is that answer: its rows are dead-lettered
        by whoever awaits them, as for a failed acknowledgement)."""
        try:
            if before is not None:
                await before
            ack = await self.producer.send_batch(
                batch.builder, batch.topic, partition=batch.partition
            )
        finally:
            queued.set_result(None)  # the partition's next batch may go
        await ack


async def settled(ack: asyncio.Future[Any] | None) -> Exception | None:
    """The broker's answer to one send: None, or the send's error. A future answered
    already (most are: a batch's rows are answered together) is read without a callback
    or a turn of the loop (asyncio.gather added both to each of a batch's 2,000 rows:
    about 5% of ingestion's time); a cancellation propagates, recording nothing.

    >>> import asyncio
    >>> async def answers() -> list[Exception | None]:
    ...     done, failed = asyncio.Future(), asyncio.Future()
    ...     done.set_result(None)
    ...     failed.set_exception(OSError("down"))
    ...     return [await settled(done), await settled(failed)]
    >>> asyncio.run(answers())
    [None, OSError('down')]
    """
    if ack is None:  # never sent (a bug): not recorded, so not lost
        return RuntimeError("the row was never sent")
    try:
        await ack  # an answered future returns at once
    except Exception as error:
        return error
    return None
