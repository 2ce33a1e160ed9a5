"""Ingestion's imputation statistics: one set per raw partition, where any replica finds it.

The running statistics a preparer imputes with are state of the raw
partition whose rows they learned from, so that the partition can move: in
``group`` mode the partitions of ``<uc>.raw`` are shared by replicas, and a
replica that takes one over (a rebalance, or the holder SIGKILLed) carries on
with that partition's statistics, not with its own. Each partition's
snapshot lives in two places:

- ``<uc>.stats``, a compacted one-partition state topic keyed ``<uc>/<partition>``:
  any replica on any machine reads it, and so does inference
  (:mod:`services.inference.stats`), which merges the partitions' snapshots;
- the seen record (:mod:`services.common.seen`: a SQLite file under
  ``DRIFTLINE_HOME/ingestion``, or PostgreSQL with ``DRIFTLINE_STATE_URL``) as
  ``prep:<uc>/<partition>``, written with the seen ids at every flush in one
  transaction: it outlives a restart of the embedded broker, which keeps nothing.

Each partition's events are imputed with that partition's statistics, so
what a row gets does not depend on which replica handled it; serving imputes
with the merge of every partition's (with one partition, the default, the
two are the same; with more, each partition's statistics estimate the same
quantities from a share of the rows).

A partition is (re)taken whenever its records do not follow on from the last
one this process handled (first sight, or a jump: another replica handled
it meanwhile). Of the statistics this process holds, the local record's and
the topic's, the one that has learned the most rows wins (a partition's
statistics only grow, so that one is the newest). A snapshot carries
``offset``, the raw offset it has learned up to, and the ``log_epoch`` of the
log that offset is on (:mod:`services.common.epoch`): records below it on
that log that come again (the previous holder died after recording but
before committing) are processed but not learned twice.

Snapshots go to the topic at most once per interval and only when they
changed (a snapshot is the whole state, tens of kilobytes), and once more
when ``stop`` is set if the publisher is let finish. So a replica on another
machine taking over from a SIGKILLed one starts from a snapshot at most
``stats_publish_seconds`` old: the rows of those last seconds are not in its
statistics (logged as ``behind``), though every event is still processed.
Replicas sharing the record (one home, or one PostgreSQL) read the exact
record instead. At start, a recorded snapshot with more rows than the
topic's is published at once, so a new broker log gets it without waiting
for traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from schemas import topics
from schemas.usecase import UseCase, UseCaseError
from services.common.epoch import log_epoch
from services.common.prep import Preparer
from services.common.seen import SeenIds

logger = logging.getLogger(__name__)

Key = tuple[str, int]
READ_TIMEOUT_S = 15.0


def snapshot_key(usecase: str, partition: int) -> str:
    """The key of a raw partition's snapshot on ``<uc>.stats``.

    >>> snapshot_key("credit", 2)
    'credit/2'
    """
    return f"{usecase}/{partition}"


def state_name(usecase: str, partition: int) -> str:
    """The name of a raw partition's statistics in the seen record."""
    return f"prep:{usecase}/{partition}"


def legacy_state_name(usecase: str) -> str:
    """Where a record written before statistics were per partition keeps them (partition 0)."""
    return f"prep:{usecase}"


async def read_snapshots(bootstrap: str, usecase: str) -> dict[int, dict[str, Any]]:
    """The latest snapshot of each raw partition on ``<uc>.stats``, by partition."""
    partition = TopicPartition(topics.stats(usecase), 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    latest: dict[int, dict[str, Any]] = {}
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        await consumer.seek_to_beginning(partition)
        while await consumer.position(partition) < end:
            batch = await consumer.getmany(partition, timeout_ms=500)
            for record in batch.get(partition, []):
                found = snapshot_of(record.key, record.value, usecase)
                if found is not None:
                    latest[found[0]] = found[1]
    finally:
        await consumer.stop()
    return latest


def snapshot_of(
    key: bytes | None, value: bytes | None, usecase: str
) -> tuple[int, dict[str, Any]] | None:
    """(partition, state) of one ``<uc>.stats`` record; None for a record of no partition.

    >>> snapshot_of(b"credit/1", b'{"rows": 3}', "credit")
    (1, {'rows': 3})
    >>> snapshot_of(b"credit", b'{"rows": 3}', "credit") is None  # written before partitions
    True
    """
    name, _, number = (key or b"").decode(errors="replace").rpartition("/")
    if name != usecase or not number.isdigit():
        return None
    try:
        state = json.loads(value or b"")
    except ValueError:
        state = None
    if not isinstance(state, dict):
        logger.warning("skipping a malformed statistics snapshot key=%s", key)
        return None
    return int(number), state


def _rows(state: dict[str, Any] | None) -> int:
    return -1 if state is None else int(state.get("rows", 0))


@dataclass(eq=False)
class PartitionStatistics:
    """Each raw partition's preparer: taken over when the partition comes, recorded, published."""

    specs: dict[str, UseCase]
    seen: SeenIds
    producer: AIOKafkaProducer
    bootstrap: str
    _: KW_ONLY
    salt: str = ""
    preparers: dict[Key, Preparer] = field(default_factory=dict, init=False)
    origin: dict[Key, str] = field(default_factory=dict, init=False)  # where each came from
    latest: dict[Key, dict[str, Any]] = field(default_factory=dict, init=False)
    published: int = field(default=0, init=False)
    _next: dict[Key, int] = field(default_factory=dict, init=False)
    _learned_to: dict[Key, int] = field(default_factory=dict, init=False)
    _dirty: set[Key] = field(default_factory=set, init=False)
    _log_epoch: str | None = field(default=None, init=False)

    async def preparer(self, usecase: str, partition: int, offset: int) -> Preparer:
        """The preparer of ``partition``'s record at ``offset``, taken over if it moved here."""
        key = (usecase, partition)
        if self._next.get(key) != offset:
            await self._take_over(key, offset)
        self._next[key] = offset + 1
        return self.preparers[key]

    def learns(self, usecase: str, partition: int, offset: int) -> bool:
        """Whether the record at ``offset`` is not yet in the partition's statistics."""
        return offset >= self._learned_to.get((usecase, partition), 0)

    async def _take_over(self, key: Key, offset: int) -> None:
        usecase, partition = key
        held = self.preparers.get(key)
        local = self.seen.state(state_name(usecase, partition))
        if local is None and partition == 0:
            local = self.seen.state(legacy_state_name(usecase))
        try:
            shared = (await self._shared(usecase)).get(partition)
        except (KafkaError, OSError, TimeoutError) as exc:  # best effort, as publishing
            logger.warning("statistics of %s not read from the topic: %s", snapshot_key(*key), exc)
            shared = None
        candidates = [
            ("topic", shared),
            ("local record", local),
            ("this process", None if held is None else held.state()),
        ]
        origin, state = max(candidates, key=lambda c: _rows(c[1]))  # first of the most rows
        if state is None:
            origin = "none"
        try:
            preparer = Preparer(self.specs[usecase], state, salt=self.salt)
        except UseCaseError as exc:  # another spec version: start afresh, as a restore does
            logger.warning("statistics of %s not restored: %s", snapshot_key(*key), exc)
            preparer, origin, state = Preparer(self.specs[usecase], salt=self.salt), "none", None
        self.preparers[key] = preparer
        self.origin[key] = origin
        epoch = await self._epoch()
        on_this_log = epoch is not None and state is not None and state.get("log_epoch") == epoch
        learned_to = int(state.get("offset", 0)) if state is not None and on_this_log else 0
        self._learned_to[key] = learned_to
        behind = max(offset - learned_to, 0) if on_this_log else None
        logger.info(
            "statistics of %s taken at offset %s from %s rows=%s%s",
            snapshot_key(*key), offset, origin, preparer.rows,
            "" if not behind else f" behind={behind} (offsets the snapshot had not learned)",
        )  # fmt: skip

    async def _epoch(self) -> str | None:
        """The broker log's epoch (a snapshot's offset means something only on its log);
        None while the broker does not answer: then no offset is trusted."""
        if self._log_epoch is None:
            try:
                self._log_epoch = await asyncio.wait_for(log_epoch(self.bootstrap), READ_TIMEOUT_S)
            except (KafkaError, OSError, TimeoutError) as exc:
                logger.warning("log epoch unknown, snapshot offsets not used: %s", exc)
        return self._log_epoch

    async def _shared(self, usecase: str) -> dict[int, dict[str, Any]]:
        return await asyncio.wait_for(read_snapshots(self.bootstrap, usecase), READ_TIMEOUT_S)

    def recorded(self, usecase: str, partitions: set[int]) -> dict[str, dict[str, Any]]:
        """The states of ``partitions`` to record now, by record name; they are published next."""
        states: dict[str, dict[str, Any]] = {}
        for partition in sorted(partitions):
            key = (usecase, partition)
            state = self.preparers[key].state()
            state["partition"] = partition
            state["offset"] = self._next[key]
            state["log_epoch"] = self._log_epoch
            states[state_name(usecase, partition)] = state
            self.latest[key] = state
            self._dirty.add(key)
        return states

    async def publish_recorded(self) -> int:
        """Publish each recorded snapshot with more rows than the topic's (a new log's start)."""
        for usecase in self.specs:
            shared = await self._shared(usecase)
            prefix = state_name(usecase, 0).removesuffix("0")
            local = {int(name.removeprefix(prefix)): s for name, s in self.seen.states(prefix)}
            legacy = self.seen.state(legacy_state_name(usecase))
            if 0 not in local and legacy is not None:
                local[0] = {**legacy, "partition": 0}
            for partition, state in local.items():
                key = (usecase, partition)
                if key not in self.latest and _rows(state) > _rows(shared.get(partition)):
                    self.latest[key] = state
                    self._dirty.add(key)
        return await self.publish()

    async def publish(self) -> int:
        """Send every changed snapshot and wait for the broker; return how many were sent.

        A snapshot not sent stays due, for the next round: publishing is best
        effort (the seen record is the truth), so no error of it
        stops ingestion.
        """
        sent = 0
        for key in sorted(self._dirty):
            self._dirty.discard(key)
            state = self.latest[key]
            topic = topics.stats(key[0])
            try:
                await self.producer.send_and_wait(
                    topic, json.dumps(state).encode(), key=snapshot_key(*key).encode()
                )
            except Exception as exc:
                self._dirty.add(key)
                logger.warning(
                    "statistics not published topic=%s key=%s rows=%s error=%s",
                    topic, snapshot_key(*key), state.get("rows"), exc,
                )  # fmt: skip
                continue
            sent += 1
        self.published += sent
        return sent

    async def run(self, stop: asyncio.Event, interval_seconds: float) -> None:
        """Publish what the record holds beyond the topic, then every interval what changed.

        Once more when ``stop`` is set, so a clean handover leaves the newest snapshot
        (if the caller awaits this instead of cancelling it).
        """
        try:
            await self.publish_recorded()
        except Exception as exc:  # best effort, as every publish
            logger.warning("recorded statistics not published at start: %s", exc)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)
            await self.publish()
            if stop.is_set():
                return
