"""aiokafka producers, consumers and topic administration, with broker retries.

Services call :func:`wait_for_broker` at start so a broker that is not up yet
is waited for with backoff instead of crashing the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from typing import Any, Literal, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas import topics
from services.common.errors import BrokerUnavailable
from services.common.settings import CommonSettings

ClientT = TypeVar("ClientT", AIOKafkaConsumer, AIOKafkaProducer)

logger = logging.getLogger(__name__)

# The broker answers a fetch once it has waited this long (aiokafka's default 500 ms; tansu
# holds a fetch for its wait even when it has records). Control events (candidates, alerts,
# promotions) are a few an hour and on the closed loop's clock, so their consumers ask often
# (measured on the embedded broker: a record's delivery median 82 ms at 500, 19 ms at 100).
CONTROL_FETCH_WAIT_MS = 100
# How long stopping a client whose start failed may take (aiokafka's stop waits for its
# coordination task, which against a lost broker may not end).
STOP_SECONDS = 10.0

ConsumerMode = Literal["assign", "group"]


def backoff_delays(first: float = 0.2, factor: float = 2.0, cap: float = 5.0) -> Iterable[float]:
    """Delays between retries: exponential, capped.

    >>> import itertools
    >>> list(itertools.islice(backoff_delays(), 6))
    [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    """
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


async def wait_for_broker(bootstrap: str, timeout: float = 60.0) -> None:
    """Return once the broker answers a metadata request; raise BrokerUnavailable after timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    for delay in backoff_delays():
        client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await client.start()
            await client.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last_error = exc
        finally:
            await client.close()
        if time.monotonic() + delay > deadline:
            break
        logger.warning("broker not ready bootstrap=%s retry_in=%.1fs", bootstrap, delay)
        await asyncio.sleep(delay)
    raise BrokerUnavailable(f"broker at {bootstrap} did not answer in {timeout}s: {last_error}")


def topic_configs(name: str, retention_ms: int | None = None) -> dict[str, str]:
    """The broker settings a topic is created with, by its kind.

    >>> topic_configs("credit.raw", 86_400_000)
    {'cleanup.policy': 'delete', 'retention.ms': '86400000'}
    >>> topic_configs("models.promotions")
    {'cleanup.policy': 'compact'}
    """
    if topics.kind_of(name) == "state":
        return {"cleanup.policy": "compact"}
    configs = {"cleanup.policy": "delete"}
    if retention_ms is not None:
        configs["retention.ms"] = str(retention_ms)
    return configs


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    *,
    retention_ms: int | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, each with its kind's policy; return those created.

    ``retention_ms`` is the event streams' retention (None: the broker's default).
    A state topic always has one partition: its readers fold it in order.
    ``configs`` gives a topic that is not driftline's own (a faust changelog)
    the broker settings its owner would have created it with.
    """
    configs = configs or {}
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await client.start()
    try:
        existing = set(await client.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n not in existing]
        if wanted:
            new = [
                NewTopic(
                    n,
                    num_partitions=1 if topics.kind_of(n) == "state" else partitions,
                    replication_factor=1,
                    topic_configs=dict(configs.get(n) or topic_configs(n, retention_ms)),
                )
                for n in wanted
            ]
            # Another process may race us; the topics exist then, which is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                await client.create_topics(new)
        return wanted
    finally:
        await client.close()


async def ensure_service_topics(
    settings: CommonSettings, service: str, usecases: Iterable[str]
) -> list[str]:
    """Create the topics ``service`` declares it reads and writes (``topics.SERVICE_TOPICS``)."""
    return await ensure_topics(
        settings.bootstrap,
        topics.SERVICE_TOPICS[service].names(usecases),
        settings.partitions,
        retention_ms=settings.retention_ms,
    )


async def within(step: Awaitable[Any], seconds: float) -> bool:
    """Whether ``step`` finished within ``seconds`` (its error raised); else it is
    cancelled and left to end on its own. Not ``asyncio.wait_for``, which waits for a
    cancelled step to end: aiokafka's stop waits for a coordination task that may not."""
    task = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except BaseException:
        task.cancel()
        raise
    if not done:
        task.cancel()
        return False
    task.result()
    return True


async def started(client: ClientT) -> ClientT:
    """``client`` (a consumer or producer), started; stopped again if its start fails or is
    cancelled, so a service stopped mid-start leaves no unclosed client (aiokafka's ``stop``
    is safe on one whose start did not finish)."""
    try:
        await client.start()
    except BaseException:
        if not await within(client.stop(), STOP_SECONDS):
            logger.warning("a client whose start failed did not stop in %ss", STOP_SECONDS)
        raise
    return client


# The record batch of a producer whose caller fills batches itself (``create_batch``,
# ``send_batch``: ingestion's rows, the prediction log). aiokafka's default, 16 KiB, is
# about ten credit rows or forty predictions a batch, and a produce request each: the
# socket writes were 38% of ingestion's busy time under B1, and the prediction log of
# 2,000 answers a second made 85 produce requests a second (measured under B5).
FILLED_BATCH_BYTES = 1024 * 1024


async def start_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    """A producer, started, that waits for every write to be acknowledged by the broker.

    Not idempotent: the embedded broker (tansu 0.6, memory storage) answers
    InitProducerId with UnknownError. A retried send may therefore duplicate a
    message; every consumer is idempotent by ``event_id``, so that is harmless.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=options.pop("linger_ms", 5),
        max_request_size=options.pop("max_request_size", 4 * 1024 * 1024),
        **options,
    )
    return await started(producer)


def client_id(group_id: str | None) -> str:
    """The client id a consumer joins with: its group, host and process.

    >>> client_id("driftline.features").startswith("driftline.features@")
    True
    """
    return f"{group_id or 'driftline'}@{socket.gethostname()}:{os.getpid()}"


async def start_consumer(
    bootstrap: str,
    topics: Iterable[str],
    group_id: str | None,
    *,
    mode: ConsumerMode = "assign",
    **options: Any,
) -> AIOKafkaConsumer:
    """A consumer, started, that never commits on its own (the consume loop commits).

    ``assign`` takes every partition of ``topics`` and resumes from the group's
    committed offsets: one process per service, and it starts at once.
    ``group`` joins the consumer group so that N replicas share the partitions
    (the production profile); a join takes a few seconds.
    """
    names = list(topics)
    common: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        # who holds what in `driftline status`: the broker names members after it
        "client_id": options.pop("client_id", client_id(group_id)),
        "enable_auto_commit": False,
        "auto_offset_reset": options.pop("auto_offset_reset", "earliest"),
        "max_partition_fetch_bytes": options.pop("max_partition_fetch_bytes", 16 * 1024 * 1024),
        **options,
    }
    if mode == "group":
        consumer = AIOKafkaConsumer(
            *names,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            rebalance_timeout_ms=3000,
            **common,
        )
        return await started(consumer)
    consumer = await started(AIOKafkaConsumer(**common))
    try:
        partitions: list[TopicPartition] = []
        for name in names:
            numbers = await _partitions_of(consumer, name)
            partitions.extend(TopicPartition(name, number) for number in sorted(numbers))
    except BaseException:
        await consumer.stop()
        raise
    consumer.assign(partitions)
    return consumer


async def _partitions_of(consumer: AIOKafkaConsumer, topic: str, timeout: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        numbers = consumer.partitions_for_topic(topic)
        if numbers:
            return set(numbers)
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"topic {topic!r} has no partitions; was it created?")
        await consumer._client.force_metadata_update()  # the public API has no refresh
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def consumer_and_producer(
    bootstrap: str, topics: Iterable[str], group_id: str | None, *, mode: ConsumerMode = "assign"
) -> AsyncIterator[tuple[AIOKafkaConsumer, AIOKafkaProducer]]:
    """A started consumer of ``topics`` and a producer; both stopped on the way out."""
    consumer = await start_consumer(bootstrap, topics, group_id, mode=mode)
    try:
        producer = await start_producer(bootstrap)
        try:
            yield consumer, producer
        finally:
            await producer.stop()
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def service_clients(
    settings: CommonSettings,
    service: str,
    usecases: Iterable[str],
    *,
    mode: ConsumerMode | None = None,
) -> AsyncIterator[tuple[AIOKafkaConsumer, AIOKafkaProducer]]:
    """The topics ``service`` declares, created; a consumer of those it reads and a producer.

    The consumer is in the service's group, in ``mode`` (the settings' mode unless given).
    """
    chosen = list(usecases)
    await ensure_service_topics(settings, service, chosen)
    reads = [name for topic in topics.SERVICE_TOPICS[service].reads for name in topic.names(chosen)]
    group = settings.consumer_group(service)
    async with consumer_and_producer(
        settings.bootstrap, reads, group, mode=mode or settings.consumer_mode
    ) as clients:
        yield clients


async def end_offsets(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    """Where each assigned partition ends now."""
    ends: dict[TopicPartition, int] = await consumer.end_offsets(list(consumer.assignment()))
    return ends


async def read_to_end(
    consumer: AIOKafkaConsumer,
    ends: dict[TopicPartition, int] | None = None,
    *,
    from_beginning: bool = False,
    timeout_ms: int = 200,
    max_records: int | None = None,
) -> AsyncIterator[Any]:
    """Each record of the assigned partitions until every one reaches ``ends``.

    ``ends`` defaults to where the partitions end when called, so records
    published meanwhile are left for the caller's next read. ``from_beginning``
    rewinds first (a replay of the whole topic).
    """
    if from_beginning:
        await consumer.seek_to_beginning(*consumer.assignment())
    if ends is None:
        ends = await end_offsets(consumer)
    while behind := [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
        batches = await consumer.getmany(*behind, timeout_ms=timeout_ms, max_records=max_records)
        for records in batches.values():
            for record in records:
                yield record
