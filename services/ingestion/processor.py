"""The processor: raw events to feature rows, per batch of the consume loop.

``process`` validates, de-duplicates, cleans and featurizes one raw event
and sends its row (the common event read, cleaned and featurized by the compiled
path, :mod:`services.common.prep.compiled`, and learned from afterwards; any other
by the preparer itself, with the same rows, reasons and statistics). ``hand_off``
sends the batch's rows and takes the imputation statistics of each raw partition
as they are after the batch; what it returns waits for the broker to acknowledge
every row and only then records the events as seen, together with those
statistics, in one transaction of the seen record; those recorded statistics are
what :mod:`services.ingestion.statistics` publishes for serving and for a replica
that takes the partition over. The consume loop commits the batch's offsets
after that, while it processes the next batch, whose events are checked
against the ids in flight as well as the record. So a crash anywhere leaves
every event either recorded (its row is on ``<uc>.features``) or uncommitted
(it is read again): none is lost, and a redelivered one adds at worst a second
copy of its row, which the features service writes once.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Histogram

from schemas import topics
from schemas.events import FeatureRow, utcnow
from schemas.usecase import UseCase
from services.common.deadletter import DeadLetterPolicy
from services.common.errors import InvalidInput
from services.common.prep import Preparer, Record, feature_row_id
from services.common.prep.compiled import CompiledPreparer, Prepared
from services.common.seen import SeenIds
from services.common.serde import encode_fields, named_struct
from services.ingestion.rows import RowSender, Sent, settled
from services.ingestion.statistics import PartitionStatistics

logger = logging.getLogger(__name__)

SERVICE = "ingestion"
KIND = "raw"

EVENTS = Counter(
    "driftline_ingestion_events_total", "raw events by outcome", ["usecase", "outcome"]
)
# Observed once a batch, with the batch's mean (an observation an event was about 3% of
# ingestion's time); its quantiles are those of the batches' means.
EVENT_SECONDS = Histogram(
    "driftline_ingestion_event_seconds",
    "time to process one raw event, a batch's mean",
    buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.1, 1.0),
)


# FeatureRow's constant defaults, read from the model once, so a new schema version or
# event type is the model's word, not a copy.
ROW_DEFAULTS = {
    name: FeatureRow.model_fields[name].default for name in ("event_type", "schema_version")
}


class Ingestion:
    """Turns the raw records of every configured use case into feature rows.

    Over ``statistics``, one preparer per raw partition: its use cases, its seen
    record and its producer are the processor's too, so the seen ids and the
    statistics are one record, written in one transaction.
    """

    def __init__(
        self, statistics: PartitionStatistics, rows_producer: AIOKafkaProducer | None = None
    ) -> None:
        self.statistics = statistics
        self.specs: dict[str, UseCase] = statistics.specs
        self.seen: SeenIds = statistics.seen
        self.producer: AIOKafkaProducer = statistics.producer
        # The feature rows' producer (see bus.FILLED_BATCH_BYTES); else the shared one.
        self.rows_producer = rows_producer or self.producer
        self.policy = DeadLetterPolicy(SERVICE, self.producer)
        self.output = {name: topics.features(name) for name in self.specs}
        self.pending: dict[tuple[str, str], Sent] = {}
        self.in_flight: set[tuple[str, str]] = set()  # handed off, not yet recorded
        self.rows = RowSender(self.rows_producer)
        # Filled by ``begin`` for the batch: each record's event, read (by the record's
        # identity), and the event ids already recorded as seen.
        self._validated: dict[int, Prepared | Record] = {}
        self._seen_before: set[tuple[str, str]] = set()
        self._counters: dict[tuple[str, str], Any] = {}
        # Each use case's reader (parse and read only, its statistics never used), its
        # compiled path and the row's features from that path's outputs.
        self._readers: dict[str, tuple[Preparer, CompiledPreparer, Features]] = {}
        self._busy_seconds, self._busy_events = 0.0, 0  # the batch's, in ``process``
        self._usecases: dict[str, str] = {}  # each topic's use case ("": none), once a name

    def _usecase(self, topic: str) -> str:
        usecase = self._usecases.get(topic)
        if usecase is None:
            usecase = self._usecases[topic] = topics.usecase_of(topic) or ""
        return usecase

    def _read(self, usecase: str, record: ConsumerRecord[Any, Any]) -> Prepared | Record:
        """The record's event: read by the compiled path where it is the common case
        (every field present and plain), else validated by the preparer; raises what the
        preparer raises. Nothing is learned."""
        reader, compiled, _ = self._reading(usecase)
        payload = reader.parse(record.value or b"")
        return compiled.read(payload) or reader.validate(payload)

    def _reading(self, usecase: str) -> tuple[Preparer, CompiledPreparer, Features]:
        """The use case's reader, its compiled path and its rows' features, made once."""
        reading = self._readers.get(usecase)
        if reading is None:
            reader = Preparer(self.specs[usecase])
            reading = (reader, CompiledPreparer(reader), features_of(reader.feature_names))
            self._readers[usecase] = reading
        return reading

    async def begin(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        """Parse and read the batch's events, and ask the seen record about all of
        their ids in one query a use case (not one an event)."""
        self._validated.clear()
        self._seen_before.clear()
        ids: dict[str, list[str]] = defaultdict(list)
        for record in records:
            usecase = self._usecase(record.topic)
            if usecase not in self.specs:
                continue
            try:
                event = self._read(usecase, record)
            except Exception:  # process raises it again, for the dead letter
                continue
            self._validated[id(record)] = event
            ids[usecase].append(event.event_id)
        for usecase, event_ids in ids.items():
            fresh = self.seen.unseen(usecase, KIND, event_ids)
            self._seen_before.update((usecase, e) for e in event_ids if e not in fresh)

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        """One raw event: its row sent, or a duplicate skipped; raises for a dead letter."""
        started = time.perf_counter()
        usecase = self._usecase(record.topic)
        if usecase not in self.specs:
            raise InvalidInput(f"topic {record.topic!r} belongs to no configured use case")
        preparer = await self.statistics.preparer(usecase, record.partition, record.offset)
        try:
            event = self._validated.pop(id(record), None)
            if event is None:  # not seen by begin (a processor driven record by record)
                event = self._read(usecase, record)
                if self.seen.unseen(usecase, KIND, [event.event_id]) == set():
                    self._seen_before.add((usecase, event.event_id))
            key = (usecase, event.event_id)
            if key in self.pending or key in self.in_flight or key in self._seen_before:
                self._count(usecase, "duplicate")
                return
            learn = self.statistics.learns(usecase, record.partition, record.offset)
            if isinstance(event, Prepared):  # cleaned and featurized already: learned here
                if learn:
                    preparer.learn(event.values)
                features: Any = self._reading(usecase)[2](event.outputs)
            else:
                event = preparer.clean(event, learn=learn)
                features = preparer.featurize(event)
            # The preparer's own output (ids checked, features finite floats): the row's
            # fields as FeatureRow holds them, encoded without a model (the same JSON as
            # its model_dump_json); the features service decodes it in full.
            row = {
                "event_id": feature_row_id(usecase, event.event_id),
                **ROW_DEFAULTS,
                "occurred_at": utcnow(),
                "usecase": usecase,
                "source_event_id": event.event_id,
                "entity_id": event.entity_id,
                "event_timestamp": event.timestamp,
                "features": features,
            }
            sent = self.pending[key] = Sent(record, usecase, event.event_id)
            await self.rows.append(
                self.output[usecase], event.entity_id.encode(), encode_fields(row), sent
            )
        except Exception:
            self._count(usecase, "dead_letter")  # the consume loop hands it to the policy
            raise
        finally:
            self._busy_seconds += time.perf_counter() - started
            self._busy_events += 1

    async def flush(self) -> None:
        """Wait for every row of the batch; record the acknowledged ones as seen."""
        await (await self.hand_off())

    async def hand_off(self) -> Awaitable[None]:
        """Send the batch's rows and take its statistics; return what records them."""
        self._validated.clear()
        self._seen_before.clear()
        if self._busy_events:
            EVENT_SECONDS.observe(self._busy_seconds / self._busy_events)
            self._busy_seconds, self._busy_events = 0.0, 0
        self.rows.ship_all()
        sent = list(self.pending.values())
        self.pending.clear()
        partitions: dict[str, set[int]] = defaultdict(set)
        for item in sent:
            partitions[item.usecase].add(item.record.partition)
        states = {uc: self.statistics.recorded(uc, held) for uc, held in partitions.items()}
        keys = [(item.usecase, item.event_id) for item in sent]
        self.in_flight.update(keys)
        return self._record(sent, states, keys)

    async def _record(
        self, sent: list[Sent], states: dict[str, dict[str, Any]], keys: list[tuple[str, str]]
    ) -> None:
        """Wait for the rows' acknowledgements; record the acknowledged ones as seen, with
        the statistics as they were after their batch."""
        try:
            answers = [await settled(item.ack) for item in sent]
            done: dict[str, list[str]] = defaultdict(list)
            for item, answer in zip(sent, answers, strict=True):
                if isinstance(answer, Exception):
                    await self.policy.on_error(answer, item.record)
                    self._count(item.usecase, "dead_letter")
                    continue
                done[item.usecase].append(item.event_id)
            for usecase, event_ids in done.items():
                self.seen.add(usecase, KIND, event_ids, state=states[usecase])
                self._count(usecase, "featurized", len(event_ids))
        finally:
            self.in_flight.difference_update(keys)

    def _count(self, usecase: str, outcome: str, amount: int = 1) -> None:
        counter = self._counters.get((usecase, outcome))
        if counter is None:
            counter = self._counters[(usecase, outcome)] = EVENTS.labels(usecase, outcome)
        counter.inc(amount)


Features = Callable[[list[float]], Any]


def features_of(names: list[str]) -> Features:
    """The row's features from a compiled event's outputs, as ``encode_fields`` takes them:
    a msgspec struct of ``names`` (in order, untracked by the garbage collector: floats
    only), which it writes as the bytes of ``dict(zip(names, outputs))`` (0.3 against
    5.8 us to make, for 44 features); that dict where msgspec cannot name a field so (a
    quote, a backslash, a control character) or a name repeats.

    >>> from services.common.serde import encode_fields, named_struct
    >>> [encode_fields(features_of(names)([0.5, -0.0])) for names in (["a", "b/c"], ["a", "a"])]
    [b'{"a":0.5,"b/c":-0.0}', b'{"a":-0.0}']
    >>> type(features_of(["a", 'b"c'])([0.5, 1.0]))
    <class 'dict'>
    """
    struct = named_struct(names, float, gc=False)
    if struct is None:
        return lambda outputs: dict(zip(names, outputs, strict=True))
    return lambda outputs: struct(*outputs)
