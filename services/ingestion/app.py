"""The faust app: one agent per use case, two tables, a dead-letter policy."""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
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

    def __init__(self, settings: CommonSettings, specs: dict[str, UseCase], *, salt: str = ""):
        self.settings = settings
        self.specs = specs
        self.salt = salt
        self.app = make_app(SERVICE, settings)
        # event ids already turned into feature rows, per use case: the de-duplication
        self.seen = self.app.Table("ingestion-seen", default=int, partitions=settings.partitions)
        # running statistics for imputation, saved every ``state_every`` events
        self.prep_state = self.app.Table(
            "ingestion-prep-state", default=None, partitions=settings.partitions
        )
        self.preparers: dict[str, Preparer] = {}
        self.since_saved: dict[str, int] = {}
        self.state_every = 1000
        self.outputs = {
            uc: self.app.topic(topics.features(uc), value_serializer="raw") for uc in specs
        }
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
            # Event by event: faust routes a table write to the changelog partition
            # of the event being processed, which batching APIs leave unset.
            async for event in stream.events():
                started = time.perf_counter()
                await self.handle(spec.name, event)
                self.maybe_save_state(spec.name, force=False)
                EVENT_SECONDS.observe(time.perf_counter() - started)

        self.app.agent(source, name=f"ingest-{spec.name}")(ingest)

    async def handle(self, usecase: str, event: Any) -> None:
        """One raw event: a feature row, a skipped duplicate, or a dead letter."""
        preparer = self.preparer(usecase)
        try:
            record = preparer.validate(preparer.parse(event.value))
            seen_key = f"{usecase}:{record.event_id}"
            if self.seen.get(seen_key):
                EVENTS.labels(usecase, "duplicate").inc()
                return
            record = preparer.clean(record)
            row = FeatureRow(
                event_id=feature_row_id(usecase, record.event_id),
                usecase=usecase,
                source_event_id=record.event_id,
                entity_id=record.entity_id,
                event_timestamp=record.timestamp,
                features=dict(preparer.featurize(record)),
            )
            # Mark first: if the table write fails the event is dead-lettered with
            # no row sent; the changelog write and the row are flushed before commit.
            self.seen[seen_key] = 1
            await self.outputs[usecase].send(
                key=row.entity_id.encode(), value=row.model_dump_json().encode()
            )
            self.since_saved[usecase] += 1
            EVENTS.labels(usecase, "featurized").inc()
        except Exception as exc:
            await self.policy.on_error(exc, event.message)
            EVENTS.labels(usecase, "dead_letter").inc()

    def maybe_save_state(self, usecase: str, *, force: bool) -> None:
        if force or self.since_saved.get(usecase, 0) >= self.state_every:
            self.prep_state[usecase] = self.preparers[usecase].state()
            self.since_saved[usecase] = 0


def build(settings: CommonSettings, specs: dict[str, UseCase], salt: str = "") -> faust.App:
    return Ingestion(settings, specs, salt=salt).app
