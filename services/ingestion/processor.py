"""The processor: raw events to feature rows, per batch of the consume loop.

``process`` validates, de-duplicates, cleans and featurizes one raw event
and sends its row; ``flush`` waits for the broker to acknowledge every row
of the batch and only then records the events as seen, together with the
imputation statistics of each raw partition, in one transaction of the seen
record; those recorded statistics are what :mod:`services.ingestion.statistics`
publishes for serving and for a replica that takes the partition over. The
consume loop commits the batch's offsets after that. So a crash anywhere
leaves every event either recorded (its row is on ``<uc>.features``) or
uncommitted (it is read again): none is lost, and a redelivered one adds at
worst a second copy of its row, which the features service writes once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Histogram

from schemas import topics
from schemas.events import FeatureRow
from schemas.usecase import UseCase
from services.common.deadletter import DeadLetterPolicy
from services.common.errors import InvalidInput
from services.common.prep import feature_row_id
from services.common.seen import SeenIds
from services.common.serde import encode
from services.ingestion.statistics import PartitionStatistics

logger = logging.getLogger(__name__)

SERVICE = "ingestion"
KIND = "raw"

EVENTS = Counter(
    "driftline_ingestion_events_total", "raw events by outcome", ["usecase", "outcome"]
)
EVENT_SECONDS = Histogram(
    "driftline_ingestion_event_seconds",
    "time to process one raw event",
    buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.1, 1.0),
)


@dataclass(slots=True)
class Sent:
    """A row on its way: the raw record it came from and the broker's future answer."""

    record: ConsumerRecord[Any, Any]
    usecase: str
    event_id: str
    ack: asyncio.Future[Any]


class Ingestion:
    """Turns the raw records of every configured use case into feature rows.

    Over ``statistics``, one preparer per raw partition: its use cases, its seen
    record and its producer are the processor's too, so the seen ids and the
    statistics are one record, written in one transaction.
    """

    def __init__(self, statistics: PartitionStatistics) -> None:
        self.statistics = statistics
        self.specs: dict[str, UseCase] = statistics.specs
        self.seen: SeenIds = statistics.seen
        self.producer: AIOKafkaProducer = statistics.producer
        self.policy = DeadLetterPolicy(SERVICE, self.producer)
        self.output = {name: topics.features(name) for name in self.specs}
        self.pending: dict[tuple[str, str], Sent] = {}
        self._counters: dict[tuple[str, str], Any] = {}

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        """One raw event: its row sent, or a duplicate skipped; raises for a dead letter."""
        started = time.perf_counter()
        usecase = topics.usecase_of(record.topic) or ""
        if usecase not in self.specs:
            raise InvalidInput(f"topic {record.topic!r} belongs to no configured use case")
        preparer = await self.statistics.preparer(usecase, record.partition, record.offset)
        try:
            payload = preparer.validate(preparer.parse(record.value or b""))
            key = (usecase, payload.event_id)
            if key in self.pending or not self.seen.unseen(usecase, KIND, [payload.event_id]):
                self._count(usecase, "duplicate")
                return
            learn = self.statistics.learns(usecase, record.partition, record.offset)
            clean = preparer.clean(payload, learn=learn)
            row = FeatureRow(
                event_id=feature_row_id(usecase, clean.event_id),
                usecase=usecase,
                source_event_id=clean.event_id,
                entity_id=clean.entity_id,
                event_timestamp=clean.timestamp,
                features=preparer.featurize(clean),
            )
            ack = await self.producer.send(
                self.output[usecase], encode(row), key=topics.FEATURES.key_of(row)
            )
            self.pending[key] = Sent(record, usecase, clean.event_id, ack)
        except Exception:
            self._count(usecase, "dead_letter")  # the consume loop hands it to the policy
            raise
        finally:
            EVENT_SECONDS.observe(time.perf_counter() - started)

    async def flush(self) -> None:
        """Wait for every row of the batch; record the acknowledged ones as seen."""
        if not self.pending:
            return
        sent = list(self.pending.values())
        self.pending.clear()
        answers = await asyncio.gather(*(s.ack for s in sent), return_exceptions=True)
        done: dict[str, list[str]] = defaultdict(list)
        partitions: dict[str, set[int]] = defaultdict(set)
        for item, answer in zip(sent, answers, strict=True):
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer  # cancelled: nothing is recorded, the batch is read again
            if isinstance(answer, Exception):
                await self.policy.on_error(answer, item.record)
                self._count(item.usecase, "dead_letter")
                continue
            done[item.usecase].append(item.event_id)
            partitions[item.usecase].add(item.record.partition)
        for usecase, event_ids in done.items():
            states = self.statistics.recorded(usecase, partitions[usecase])
            self.seen.add(usecase, KIND, event_ids, state=states)
            self._count(usecase, "featurized", len(event_ids))

    def _count(self, usecase: str, outcome: str, amount: int = 1) -> None:
        counter = self._counters.get((usecase, outcome))
        if counter is None:
            counter = self._counters[(usecase, outcome)] = EVENTS.labels(usecase, outcome)
        counter.inc(amount)
