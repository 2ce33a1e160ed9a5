"""The faust app: one agent per use case, two tables, a dead-letter policy."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event
from prometheus_client import Counter, Histogram

from schemas import topics
from schemas.events import FeatureRow
from schemas.usecase import UseCase
from services.common.deadletter import DeadLetterPolicy
from services.common.faust_app import make_app
from services.common.prep import Preparer, feature_row_id
from services.common.settings import CommonSettings

logger = logging.getLogger(__name__)

SERVICE = "ingestion"

EVENTS = Counter(
    "driftline_ingestion_events_total", "raw events by outcome", ["usecase", "outcome"]
)
EVENT_SECONDS = Histogram(
    "driftline_ingestion_event_seconds",
    "time to process one raw event",
    buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.1, 1.0),
)


class Ingestion:
    """Holds the app, its tables and one preparer per use case."""

    def __init__(
        self,
        settings: CommonSettings,
        specs: dict[str, UseCase],
        *,
        salt: str = "",
        batch_size: int = 1000,
        batch_within: float = 0.05,
    ):
        self.settings = settings
        self.specs = specs
        self.salt = salt
        # Rows and changelog writes go out in few, full produce requests: a request
        # per message (faust's default, no linger) costs more CPU than the event itself.
        self.app = make_app(
            SERVICE, settings, producer_linger=0.005, producer_max_batch_size=256 * 1024
        )
        # event ids already turned into feature rows, per use case: the de-duplication
        self.seen = self.app.Table("ingestion-seen", default=int, partitions=settings.partitions)
        # running statistics for imputation, saved every ``state_every`` events
        self.prep_state = self.app.Table(
            "ingestion-prep-state", default=None, partitions=settings.partitions
        )
        self.preparers: dict[str, Preparer] = {}
        self.since_saved: dict[str, int] = {}
        self.state_every = 1000
        self.output_names = {uc: topics.features(uc) for uc in specs}
        self.batch_size = batch_size
        self.batch_within = batch_within
        self._counters: dict[tuple[str, str], Any] = {}
        self.policy = DeadLetterPolicy(SERVICE, send=self._send_dead_letter)
        for spec in specs.values():
            self._add_agent(spec)

    async def _send_dead_letter(self, topic: str, value: bytes) -> None:
        await self.app.topic(topic, value_serializer="raw").send(value=value)

    def preparer(self, usecase: str) -> Preparer:
        """The use case's preparer, restored from the state table on first use."""
        if usecase not in self.preparers:
            saved = self.prep_state.get(usecase)
            self.preparers[usecase] = Preparer(self.specs[usecase], saved, salt=self.salt)
            self.since_saved[usecase] = 0
        return self.preparers[usecase]

    def _add_agent(self, spec: UseCase) -> None:
        source = self.app.topic(topics.raw(spec.name), value_serializer="raw", key_serializer="raw")

        async def ingest(stream: Any) -> None:
            # In batches. faust acks a batch's events only after the whole batch is
            # handled, and flushes the producer before it commits their offsets.
            async for events in stream.take_events(self.batch_size, self.batch_within):
                await self.handle_batch(spec.name, events)

        self.app.agent(source, name=f"ingest-{spec.name}")(ingest)

    async def handle_batch(self, usecase: str, events: Sequence[Any]) -> None:
        """A batch of raw events: rows sent, then, once the broker has them, marked seen.

        An event is marked seen only after its row is acknowledged, so a crash in
        between leaves at worst a second copy of the row on ``<uc>.features`` after
        redelivery (the feature store writes each event once), never a lost row.
        """
        preparer = self.preparer(usecase)
        pending: dict[str, tuple[Any, Awaitable[Any]]] = {}  # seen key -> (event, ack)
        for event in events:
            started = time.perf_counter()
            try:
                sent = await self.handle(usecase, preparer, event, pending)
                if sent is not None:
                    pending[sent[0]] = (event, sent[1])
            except Exception as exc:
                await self.policy.on_error(exc, event.message)
                self._count(usecase, "dead_letter")
            EVENT_SECONDS.observe(time.perf_counter() - started)
        if not pending:
            return
        acks = await asyncio.gather(*(ack for _, ack in pending.values()), return_exceptions=True)
        for (seen_key, (event, _)), ack in zip(pending.items(), acks, strict=True):
            # faust writes a table key to the changelog partition of the stream's
            # current event, which ``take_events`` leaves unset: set it per event.
            if isinstance(ack, BaseException) and not isinstance(ack, Exception):
                raise ack  # cancelled: nothing is marked, the batch is redelivered
            with _as_current(event):
                if isinstance(ack, Exception):
                    await self.policy.on_error(ack, event.message)
                    self._count(usecase, "dead_letter")
                    continue
                self.seen[seen_key] = 1
                self.since_saved[usecase] += 1
                self._count(usecase, "featurized")
        with _as_current(events[-1]):
            self.maybe_save_state(usecase, force=False)

    async def handle(
        self,
        usecase: str,
        preparer: Preparer,
        event: Any,
        pending: dict[str, tuple[Any, Awaitable[Any]]],
    ) -> tuple[str, Awaitable[Any]] | None:
        """One raw event: its seen key and the ack of its row, or None for a duplicate.

        Raises what makes the event a dead letter.
        """
        record = preparer.validate(preparer.parse(event.value))
        seen_key = f"{usecase}:{record.event_id}"
        if self.seen.get(seen_key) or seen_key in pending:
            self._count(usecase, "duplicate")
            return None
        record = preparer.clean(record)
        row = FeatureRow(
            event_id=feature_row_id(usecase, record.event_id),
            usecase=usecase,
            source_event_id=record.event_id,
            entity_id=record.entity_id,
            event_timestamp=record.timestamp,
            features=preparer.featurize(record),
        )
        # Straight to the producer: faust's channel layer adds nothing for bytes.
        ack = await self.app.producer.send(
            self.output_names[usecase],
            row.entity_id.encode(),
            row.model_dump_json().encode(),
            None,
            None,
            None,
        )
        return seen_key, ack

    def _count(self, usecase: str, outcome: str) -> None:
        counter = self._counters.get((usecase, outcome))
        if counter is None:
            counter = self._counters[(usecase, outcome)] = EVENTS.labels(usecase, outcome)
        counter.inc()

    def maybe_save_state(self, usecase: str, *, force: bool) -> None:
        if force or self.since_saved.get(usecase, 0) >= self.state_every:
            self.prep_state[usecase] = self.preparers[usecase].state()
            self.since_saved[usecase] = 0


@contextmanager
def _as_current(event: Any) -> Iterator[None]:
    """Make ``event`` the current event of the stream, as faust's own iteration does."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def build(settings: CommonSettings, specs: dict[str, UseCase], salt: str = "") -> faust.App:
    return Ingestion(settings, specs, salt=salt).app
