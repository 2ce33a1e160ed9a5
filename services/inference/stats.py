"""The statistics follower: requests are imputed with ingestion's latest statistics.

Ingestion keeps imputation statistics per raw partition and publishes each
partition's snapshot to ``<uc>.stats``, a compacted state topic keyed
``<uc>/<partition>`` (:mod:`services.ingestion.statistics`). Every
``refresh_seconds`` the follower asks where those topics end (one
``ListOffsets`` request for all of them); for a topic that moved it reads
what was added since the last refresh, keeps the latest snapshot of each
partition, and hands their merge (:func:`merge_states`) to the use case's
:meth:`~services.inference.features.FeatureResolver.use_statistics`.
Between refreshes its partitions are paused, so it fetches nothing, and the
request path never waits for it: a resolver swaps its preparer whole.

An empty topic (a fresh log, or no event ingested yet) leaves the spec's
declared fills, as a fresh ingestion would impute. Asking for the end each
time, rather than following the stream, is what makes a new broker log
harmless: tansu answers a fetch past a log's end with nothing, so a
consumer left at an old log's position would wait there forever, while the
end asked for is always the current log's; an end below the last one read
is a new log, read from its beginning. A refresh that fails drops the
consumer; the next one connects again, and the statistics held meanwhile
keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

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
        self._snapshots: dict[str, dict[int, dict[str, Any]]] = {}  # topic: raw partition: state
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
        """Apply the merged snapshots of every topic that moved; return those use cases."""
        consumer = self.consumer or await self._connect()
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        updated: list[str] = []
        for partition in partitions:
            end = ends[partition]
            known = self._ends.get(partition)
            if end == known:
                continue
            if known is None or end < known:  # the first read, or a new log: from its beginning
                self._snapshots[partition.topic] = {}
                known = None
            if end > 0:
                kept = await self._read(consumer, partition, known, end)
                if kept is None:
                    continue  # not readable yet: asked again at the next refresh
                if kept and self._apply(partition.topic):
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

    async def _read(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, start: int | None, end: int
    ) -> int | None:
        """Keep the latest snapshot of each raw partition from ``start`` to ``end``; return
        how many were kept, None if the records did not all come in time (what came is
        kept: a snapshot read twice is the same)."""
        usecase = self._usecases[partition.topic]
        latest = self._snapshots.setdefault(partition.topic, {})
        kept = 0
        consumer.resume(partition)
        try:
            if start is None:
                await consumer.seek_to_beginning(partition)
            else:
                consumer.seek(partition, start)
            deadline = time.monotonic() + self.timeout_seconds / 2
            while time.monotonic() < deadline:
                batch = await consumer.getmany(partition, timeout_ms=200)
                for record in batch.get(partition, []):
                    found = _snapshot(record, usecase)
                    if found is not None:
                        latest[found[0]] = found[1]
                        kept += 1
                if await consumer.position(partition) >= end:
                    return kept
            return None
        finally:
            consumer.pause(partition)

    def _apply(self, topic: str) -> bool:
        usecase = self._usecases[topic]
        snapshots = self._snapshots.get(topic, {})
        if not snapshots:
            return False
        try:
            state = merge_states([snapshots[p] for p in sorted(snapshots)])
            self.resolvers[usecase].use_statistics(state)
        except (ValueError, KeyError, TypeError, UseCaseError) as exc:
            logger.warning(
                "statistics not applied topic=%s partitions=%s error=%s",
                topic,
                sorted(snapshots),
                exc,
            )
            return False
        self.applied += 1
        logger.debug(
            "statistics applied usecase=%s rows=%s partitions=%s",
            usecase,
            state.get("rows"),
            sorted(snapshots),
        )
        return True


def _snapshot(
    record: ConsumerRecord[bytes, bytes], usecase: str
) -> tuple[int, dict[str, Any]] | None:
    """(raw partition, state) of a ``<uc>.stats`` record keyed ``<uc>/<partition>``, else None."""
    name, _, number = (record.key or b"").decode(errors="replace").rpartition("/")
    if name != usecase or not number.isdigit():
        return None  # a key of no partition: written before statistics were per partition
    try:
        state = json.loads(record.value or b"")
    except ValueError:
        state = None
    if not isinstance(state, dict) or state.get("usecase") != usecase:
        logger.warning(
            "skipping a snapshot that is not %s's statistics topic=%s offset=%s",
            usecase,
            record.topic,
            record.offset,
        )
        return None  # the partition's last good snapshot stays
    return int(number), state


def merge_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One preparer state from the raw partitions' states (``Preparer.state()``).

    Exact for what merges exactly: ``rows`` and a mean's count add, the mean is
    the count-weighted mean, and a most-frequent's counts add. A rolling
    median has no exact merge (each partition keeps only its last ``window``
    values, in no common order): the merge holds every partition's window,
    and imputes their median. A field whose imputation differs between the
    states raises ValueError (a spec changed mid-stream; the states are not
    applied).

    >>> a = {"version": 1, "usecase": "u", "rows": 2,
    ...      "fields": {"x": {"impute": "mean", "count": 2, "mean": 1.0}}}
    >>> b = {"version": 1, "usecase": "u", "rows": 1,
    ...      "fields": {"x": {"impute": "mean", "count": 1, "mean": 4.0}}}
    >>> merge_states([a, b])["fields"]["x"]
    {'impute': 'mean', 'count': 3, 'mean': 2.0}
    """
    if len(states) == 1:
        return states[0]
    fields: dict[str, dict[str, Any]] = {}
    for name in sorted({name for state in states for name in state["fields"]}):
        parts = [state["fields"][name] for state in states if name in state["fields"]]
        kinds = {part["impute"] for part in parts}
        if len(kinds) != 1:
            raise ValueError(
                f"field {name!r} is imputed by {sorted(kinds)} in different partitions"
            )
        fields[name] = _merge_field(kinds.pop(), parts)
    return {
        "version": states[0]["version"],
        "usecase": states[0]["usecase"],
        "rows": sum(int(state["rows"]) for state in states),
        "fields": fields,
    }


def _merge_field(kind: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    if kind == "mean":
        count = sum(int(part["count"]) for part in parts)
        total = sum(int(part["count"]) * float(part["mean"]) for part in parts)
        return {"impute": kind, "count": count, "mean": total / count if count else 0.0}
    if kind == "median":
        values = [float(v) for part in parts for v in part["values"]]
        return {"impute": kind, "window": max(len(values), 1), "values": values}
    if kind == "most_frequent":
        counts: Counter[str] = Counter()
        originals: dict[str, Any] = {}
        for part in parts:
            counts.update(part["counts"])
            for key, value in part["originals"].items():
                originals.setdefault(key, value)
        return {"impute": kind, "counts": dict(counts), "originals": originals}
    raise ValueError(f"no merge for the statistic of impute {kind!r}")
