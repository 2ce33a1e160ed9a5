"""The log epoch: which broker log a service's local state refers to.

The embedded broker keeps nothing when it stops, while ``DRIFTLINE_HOME``
keeps checkpoints that name offsets. A checkpoint's offsets mean something
only on the log they were read from. So every log gets an id, its epoch: the
first record of the one-partition state topic ``driftline.epoch``, written
by whoever finds the topic empty (a race between two writers is settled by
the log itself: the record at the lowest offset wins, and every reader reads
the same one). A checkpoint stores the epoch beside its offsets; on a start
whose epoch differs, the offsets are dropped and the new log is read from
its beginning, while the learned state is kept.

On Apache Kafka the epoch outlives restarts, as the log does; a cluster
whose topics were deleted and recreated gets a new one.

A running service notices a new log with :func:`watch_log` (a broker killed
and started again empty on the same address) and starts its body again from
its durable state, without a process restart (``services/common/runtime.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from schemas import topics
from services.common.bus import ensure_topics, started

logger = logging.getLogger(__name__)

EPOCH_PARTITION = TopicPartition(topics.LOG_EPOCH, 0)


async def _first_epoch(bootstrap: str) -> str | None:
    # A short fetch wait: tansu holds a fetch for the whole wait even when it has the record.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await started(consumer)
    try:
        consumer.assign([EPOCH_PARTITION])
        end = (await consumer.end_offsets([EPOCH_PARTITION]))[EPOCH_PARTITION]
        await consumer.seek_to_beginning(EPOCH_PARTITION)
        while await consumer.position(EPOCH_PARTITION) < end:
            batch = await consumer.getmany(EPOCH_PARTITION, timeout_ms=500, max_records=1)
            for record in batch.get(EPOCH_PARTITION, []):
                try:
                    return str(json.loads(record.value or b"")["epoch"])
                except (ValueError, KeyError, TypeError):
                    logger.warning("skipping a malformed epoch record offset=%s", record.offset)
        return None
    finally:
        await consumer.stop()


async def log_epoch(bootstrap: str) -> str:
    """The epoch of the log at ``bootstrap``: read, or written first when the log has none."""
    await ensure_topics(bootstrap, [topics.LOG_EPOCH])
    found = await _first_epoch(bootstrap)
    if found is not None:
        return found
    epoch = uuid.uuid4().hex
    producer = await started(AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all"))
    try:
        document = {"epoch": epoch, "created_at": datetime.now(UTC).isoformat()}
        await producer.send_and_wait(
            topics.LOG_EPOCH, json.dumps(document).encode(), key=epoch.encode(), partition=0
        )
    finally:
        await producer.stop()
    found = await _first_epoch(bootstrap)  # another writer may have been first
    assert found is not None, "the epoch just written is not on the log"
    logger.info("new log epoch=%s bootstrap=%s", found, bootstrap)
    return found


class Checkpointed(Protocol):
    """A piece of checkpointed state: the offsets it has read and the log they belong to."""

    offsets: dict[str, int]
    log_epoch: str | None


def adopt(states: Mapping[str, Checkpointed], epoch: str, *, owner: str) -> dict[str, int]:
    """Move each state onto the log ``epoch``; return the offsets to resume from, all states'.

    A state from another log keeps what it learned and drops its offsets (the
    new log is read from its beginning). A state written before epochs existed
    (``log_epoch`` None) is trusted: offsets past the log's end are caught by
    :func:`services.common.checkpoint.resume`.

    >>> from types import SimpleNamespace as State
    >>> same = State(offsets={"a:0": 7}, log_epoch="e1")
    >>> other = State(offsets={"b:0": 9}, log_epoch="e0")
    >>> adopt({"same": same, "other": other}, "e1", owner="t")
    {'a:0': 7}
    >>> other.offsets, other.log_epoch
    ({}, 'e1')
    """
    offsets: dict[str, int] = {}
    for name, state in states.items():
        if state.log_epoch not in (None, epoch) and state.offsets:
            logger.warning(
                "new broker log: %s:%s's checkpoint refers to log %s, the broker's is %s; "
                "its learned state is kept and the new log is read from its beginning "
                "(dropped offsets %s)",
                owner, name, state.log_epoch, epoch, state.offsets,
            )  # fmt: skip
            state.offsets = {}
        state.log_epoch = epoch
        offsets.update(state.offsets)
    return offsets


async def observed_epoch(bootstrap: str) -> str | None:
    """The epoch the broker's log has now, None when it has none; raises when unreachable."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        if topics.LOG_EPOCH not in await admin.list_topics():
            return None
    finally:
        await admin.close()
    return await _first_epoch(bootstrap)


async def watch_log(bootstrap: str, epoch: str, interval: float = 2.0) -> str | None:
    """Return once the broker's log is not the log ``epoch`` (its new epoch, or None).

    A broker that does not answer tells nothing yet: aiokafka's clients
    reconnect by themselves, and a broker that comes back with its log
    (Apache Kafka) has the same epoch.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            seen = await asyncio.wait_for(observed_epoch(bootstrap), timeout=15)
        except (KafkaError, OSError, TimeoutError):
            continue
        if seen != epoch:
            logger.warning("the broker's log changed: epoch %s -> %s", epoch, seen)
            return seen
