"""The statistics follower: requests are imputed with ingestion's latest statistics.

Ingestion publishes each use case's recorded imputation statistics to
``<uc>.stats``, a compacted state topic keyed by the use case
(:mod:`services.ingestion.statistics`). Every ``refresh_seconds`` the
follower asks where those topics end (one ``ListOffsets`` request for all of
them); for a topic that moved it reads only the last record, the latest
snapshot, and hands it to the use case's
:meth:`~services.inference.features.FeatureResolver.use_statistics`.
Between refreshes its partitions are paused, so it fetches nothing, and the
request path never waits for it: a resolver swaps its preparer whole.

An empty topic (a fresh log, or no event ingested yet) leaves the spec's
declared fills, as a fresh ingestion would impute. Asking for the end each
time, rather than following the stream, is what makes a new broker log
harmless: tansu answers a fetch past a log's end with nothing, so a
consumer left at an old log's position would wait there forever, while the
end asked for is always the current log's. A refresh that fails drops the
consumer; the next one connects again, and the statistics held meanwhile
keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas import topics
from schemas.usecase import UseCaseError
from services.common.bus import ensure_topics, start_consumer
from services.inference.features import FeatureResolver

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0


class StatisticsFollower:
    """Keeps each use case's resolver on the latest snapshot of ``<uc>.stats``."""

    def __init__(
        self,
        bootstrap: str,
        resolvers: Mapping[str, FeatureResolver],
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        timeout_seconds: float = 15.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.resolvers = resolvers
        self.refresh_seconds = refresh_seconds
        self.timeout_seconds = timeout_seconds
        self.applied = 0
        self.consumer: AIOKafkaConsumer | None = None
        self._usecases = {topics.stats(usecase): usecase for usecase in resolvers}
        self._ends: dict[TopicPartition, int] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        """Take the latest statistics now, so the first requests use them, then follow."""
        await self._refresh_or_log()
        self._task = asyncio.create_task(self._run(), name="statistics-follower")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    async def refresh(self) -> list[str]:
        """Apply the latest snapshot of every topic that moved; return those use cases."""
        consumer = self.consumer or await self._connect()
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        updated: list[str] = []
        for partition in partitions:
            end = ends[partition]
            if end == self._ends.get(partition):
                continue
            if end > 0:
                record = await self._last(consumer, partition, end)
                if record is None:
                    continue  # not readable yet: asked again at the next refresh
                if self._apply(record):
                    updated.append(self._usecases[partition.topic])
            self._ends[partition] = end
        return updated

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.refresh_seconds)
            if not self._stop.is_set():
                await self._refresh_or_log()

    async def _refresh_or_log(self) -> None:
        try:
            await asyncio.wait_for(self.refresh(), self.timeout_seconds)
        except Exception as exc:  # the broker, not a request: keep the statistics held
            if not self._failing:
                logger.warning(
                    "statistics not refreshed, the last ones keep serving: %s: %s",
                    type(exc).__name__,
                    exc,
                )
            self._failing = True
            await self._disconnect()
            return
        if self._failing:
            logger.info("statistics refreshed again")
        self._failing = False

    async def _connect(self) -> AIOKafkaConsumer:
        names = list(self._usecases)
        await ensure_topics(self.bootstrap, names)  # state topics: compacted, one partition
        consumer = await start_consumer(self.bootstrap, names, None, mode="assign")
        consumer.pause(*consumer.assignment())
        self.consumer = consumer
        self._ends = {}
        return consumer

    async def _disconnect(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _last(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, end: int
    ) -> ConsumerRecord[bytes, bytes] | None:
        """The record at ``end - 1`` or a later one, the newest fetched; None if none came."""
        consumer.resume(partition)
        try:
            consumer.seek(partition, end - 1)
            deadline = time.monotonic() + self.timeout_seconds / 2
            while time.monotonic() < deadline:
                batch = await consumer.getmany(partition, timeout_ms=200)
                records = batch.get(partition, [])
                if records and records[-1].offset >= end - 1:
                    return records[-1]
            return None
        finally:
            consumer.pause(partition)

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        usecase = self._usecases[record.topic]
        try:
            state = json.loads(record.value or b"")
            if not isinstance(state, dict):
                raise ValueError(f"expected a JSON object, got {type(state).__name__}")
            self.resolvers[usecase].use_statistics(state)
        except (ValueError, UseCaseError) as exc:
            logger.warning(
                "statistics not applied topic=%s partition=%s offset=%s error=%s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return False
        self.applied += 1
        logger.debug(
            "statistics applied usecase=%s rows=%s offset=%s",
            usecase,
            state.get("rows"),
            record.offset,
        )
        return True
