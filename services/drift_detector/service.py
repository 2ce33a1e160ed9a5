"""The drift detector service: consume, window, check, alert, checkpoint, then commit.

Why the aiokafka :class:`ConsumeLoop` with a checkpoint and not a faust app
with windows in changelog-backed tables: the windows, the alert gates
(hysteresis, cooldown) and the consumed offsets must change together, or a
restart replays rows into windows that already hold them and re-decides
alerts differently. Without transactions (the embedded broker has none, so
no faust ``exactly_once``) faust cannot give that. A sliding window of 10,000
rows in a faust table would also write every row to a changelog topic. Here
one checkpoint file holds every use case's monitor and the next offset of
each partition; it is written atomically before the offsets are committed,
and a start seeks each partition to the checkpoint's offsets. Alert ids are
derived from the use case, kind, reference and window position, so an alert
re-published after a crash has the same id and consumers drop it.

At start the detector replays ``models.candidates`` and ``models.promotions``
from the beginning to find each use case's champion (its lineage), loads the
champion's training data as the reference once, and then follows both
topics live: a ``promote`` or ``rollback`` switches the reference.

Checks and report rendering run in worker threads (``asyncio.to_thread``):
the consumer and the health endpoint stay responsive while evidently works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas import topics
from schemas.events import FeatureRow, ModelCandidate, Prediction, Promotion
from schemas.inputs import Label
from schemas.usecase import UseCase
from services.common.bus import (
    end_offsets,
    read_to_end,
    service_clients,
    start_consumer,
)
from services.common.checkpoint import offset_key, save_checkpoint
from services.common.consume import checkpointed_loop, resume_checkpointed
from services.common.errors import InvalidInput
from services.common.health import HealthServer
from services.common.serde import decode, encode
from services.drift_detector.checkpoint import load_checkpoint
from services.drift_detector.errors import ReferenceUnavailable
from services.drift_detector.monitor import UseCaseMonitor
from services.drift_detector.reference import (
    Lineage,
    ReferenceSource,
    feast_reference,
    reference_frame,
)
from services.drift_detector.settings import DriftDetectorSettings

logger = logging.getLogger(__name__)

SERVICE = "drift_detector"
TOPICS = topics.SERVICE_TOPICS[SERVICE]
MODEL_TOPICS = (topics.MODELS_CANDIDATES, topics.MODELS_PROMOTIONS)


class DriftDetectorProcessor:
    """Routes records to use-case monitors; publishes alerts and checkpoints in ``flush``."""

    def __init__(
        self,
        detector: DriftDetector,
        producer: AIOKafkaProducer,
    ) -> None:
        self.detector = detector
        self.producer = producer
        self.last_checkpoint = time.monotonic()
        self.dirty = False
        self.published = 0

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        detector = self.detector
        if record.topic in MODEL_TOPICS:
            await detector.offer_model_event(record)
            return
        monitor = detector.by_topic[record.topic]
        self.dirty = True
        reports_dir = detector.reports_dir
        event = decode(record.topic, record.value)
        if isinstance(event, FeatureRow):
            await monitor.offer_features(event, reports_dir)
        elif isinstance(event, Prediction):
            await monitor.offer_prediction(event, reports_dir)
        elif isinstance(event, Label):
            await monitor.offer_label(event, reports_dir)

    async def flush(self) -> None:
        """Alerts out, then the checkpoint (when due); the loop commits after this."""
        alerts = False
        for monitor in self.detector.monitors.values():
            for alert in monitor.alerts:
                await self.producer.send_and_wait(
                    topics.DRIFT_ALERTS, encode(alert), key=monitor.name.encode()
                )
                self.published += 1
                alerts = True
                logger.warning(
                    "drift alert usecase=%s kind=%s severity=%s share=%s window_rows=%s "
                    "champion=%s report=%s",
                    monitor.name,
                    alert.kind,
                    alert.severity,
                    alert.drift_share,
                    alert.window.rows,
                    alert.champion_version,
                    alert.report_path,
                )
            monitor.alerts.clear()
            await monitor.write_reports()  # after the alerts, before the checkpoint
        interval = self.detector.settings.checkpoint_seconds
        due = time.monotonic() - self.last_checkpoint >= interval
        if self.dirty and (alerts or due):
            await self.checkpoint()

    async def checkpoint(self) -> None:
        detector = self.detector
        await asyncio.to_thread(save_checkpoint, detector.checkpoint_path, detector.monitors)
        self.last_checkpoint = time.monotonic()
        self.dirty = False


class DriftDetector:
    """The service: every configured use case in one consume loop."""

    def __init__(
        self,
        settings: DriftDetectorSettings,
        specs: dict[str, UseCase],
        reference_source: ReferenceSource | None = None,
    ) -> None:
        self.settings = settings
        self.specs = specs
        self.reference_source: ReferenceSource = reference_source or feast_reference
        state_dir = settings.service_home(SERVICE)
        self.reports_dir = (state_dir / "reports").resolve()
        self.checkpoint_path = state_dir / "checkpoint.pkl"
        self.monitors = self._restore()
        self.lineage = Lineage()
        self.by_topic: dict[str, UseCaseMonitor] = {
            topic.name(monitor.name): monitor
            for topic in TOPICS.reads
            if topic.per_usecase
            for monitor in self.monitors.values()
        }
        self.processor: DriftDetectorProcessor | None = None

    def _new_monitor(self, spec: UseCase) -> UseCaseMonitor:
        settings = self.settings
        return UseCaseMonitor(
            spec,
            exit_ratio=settings.hysteresis_exit_ratio,
            tolerance=settings.performance_tolerance,
            bootstrap=settings.bootstrap_reference,
            max_pending=settings.max_pending,
        )

    def _restore(self) -> dict[str, UseCaseMonitor]:
        saved: dict[str, UseCaseMonitor] = load_checkpoint(self.checkpoint_path) or {}
        monitors = {}
        for name, spec in self.specs.items():
            monitor = saved.get(name)
            if monitor is not None and monitor.spec.spec_hash() == spec.spec_hash():
                monitors[name] = monitor
                logger.info("resumed usecase=%s offsets=%s", name, monitor.offsets)
            else:
                fresh = self._new_monitor(spec)
                if monitor is not None:  # a changed spec: new windows, same offsets
                    fresh.offsets = dict(monitor.offsets)
                monitors[name] = fresh
        return monitors

    def checkpointed_offsets(self, topic: str) -> dict[str, int] | None:
        """The offsets of the monitor ``topic`` feeds (the model topics are replayed, not kept)."""
        monitor = self.by_topic.get(topic)
        return None if monitor is None else monitor.offsets

    # ---- the champion's lineage -------------------------------------------------

    async def offer_model_event(self, record: ConsumerRecord[Any, Any]) -> None:
        """A candidate is remembered; a promotion may switch a reference."""
        event = decode(record.topic, record.value)
        if isinstance(event, ModelCandidate):
            self.lineage.offer_candidate(event)
            # A promotion read before its candidate (two topics, no order between them)
            # left the reference waiting for this event: switch now.
            champion = self.lineage.champion(event.usecase)
            if event.usecase in self.monitors and champion == (
                event.model_name,
                event.model_version,
            ):
                await self.switch_reference(event.usecase)
            return
        assert isinstance(event, Promotion)
        if self.lineage.offer_promotion(event) and event.usecase in self.monitors:
            await self.switch_reference(event.usecase)

    async def switch_reference(self, usecase: str) -> None:
        """Load the champion's training data as the reference; keep the old one on failure."""
        monitor = self.monitors[usecase]
        champion = self.lineage.champion(usecase)
        if champion is None:
            return
        reference_id = f"{champion[0]}:{champion[1]}"
        if champion == monitor.champion and monitor.reference_id == reference_id:
            return  # a reference kept on failure is tried again (its candidate came later)
        candidate = self.lineage.champion_candidate(usecase)
        try:
            if candidate is None:
                raise ReferenceUnavailable(usecase, f"no candidate event for {reference_id}")
            spec = monitor.spec
            raw = await asyncio.to_thread(self.reference_source, spec, candidate)
            frame = reference_frame(
                raw, monitor.features, spec.drift.reference_rows, spec.drift.min_rows, usecase
            )
        except Exception as exc:
            logger.error(
                "reference kept usecase=%s champion=%s reason=%s", usecase, reference_id, exc
            )
            monitor.set_champion(candidate, champion)
            return
        monitor.set_reference(frame, reference_id, candidate)
        if self.processor is not None:
            self.processor.dirty = True

    async def replay_lineage(self) -> dict[TopicPartition, int]:
        """Read both model topics from the beginning; return where each partition ended."""
        consumer = await start_consumer(self.settings.bootstrap, MODEL_TOPICS, None)
        try:
            ends = await end_offsets(consumer)
            async for record in read_to_end(consumer, ends, from_beginning=True, max_records=1000):
                try:
                    event = decode(record.topic, record.value)
                except InvalidInput as exc:
                    logger.info("skipped model event offset=%s: %s", record.offset, exc)
                    continue
                if isinstance(event, ModelCandidate):
                    self.lineage.offer_candidate(event)
                elif isinstance(event, Promotion):
                    self.lineage.offer_promotion(event)
            return ends
        finally:
            await consumer.stop()

    # ---- running ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event, health: HealthServer | None = None) -> None:
        settings = self.settings
        # assign: every partition in this one process, which holds every window.
        async with service_clients(settings, SERVICE, self.specs, mode="assign") as (
            consumer,
            producer,
        ):
            model_ends = await self.replay_lineage()
            for usecase in self.monitors:
                await self.switch_reference(usecase)
            # The model topics where the lineage replay ended; the rest where the
            # checkpoint says (not the group's commits: it says what the windows hold).
            ends = {offset_key(tp.topic, tp.partition): end for tp, end in model_ends.items()}
            await resume_checkpointed(
                consumer, self.monitors, settings.bootstrap, owner=SERVICE, positions=ends
            )
            self.processor = DriftDetectorProcessor(self, producer)
            loop = checkpointed_loop(
                consumer, self.processor, producer, settings,
                service=SERVICE, checkpointed=self.checkpointed_offsets,
            )  # fmt: skip
            if health is not None:
                health.ready = lambda: True
            logger.info(
                "drift detector running usecases=%s reports=%s",
                sorted(self.specs),
                self.reports_dir,
            )
            while not stop.is_set():
                await loop.run_once()
            if self.processor.dirty:
                await self.processor.checkpoint()


async def serve(settings: DriftDetectorSettings, stop: asyncio.Event, health: HealthServer) -> None:
    """The service body: watch every configured use case for drift until ``stop``."""
    await DriftDetector(settings, settings.load_usecases()).run(stop, health)
