"""The online trainer service: consume, join, learn, checkpoint, then commit.

Why the aiokafka :class:`ConsumeLoop` and not a faust agent: the restart
guarantee (no row learned twice, none skipped) needs the model and the
consumed offsets to change together. faust keeps table state in changelog
topics and commits source offsets on its own schedule; without transactions
(the embedded broker has none, so no ``exactly_once``) a crash between the two
replays rows into a model that already learned them. Here one checkpoint file
per use case holds the model, the pending join, the metrics and the next
offset of every partition; it is written atomically *before* the offsets are
committed, and a start seeks every partition to the checkpoint's offsets.
The trainer reads every partition itself (``assign`` mode): a use case has one
model, which cannot be split across replicas.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from schemas import topics
from schemas.events import DriftAlert, FeatureDrift, ModelCandidate, Window
from schemas.usecase import UseCase
from services.common.bus import service_clients
from services.common.checkpoint import save_checkpoint
from services.common.consume import checkpointed_loop, resume_checkpointed
from services.common.health import HealthServer
from services.common.serde import decode, encode
from services.online_trainer import telemetry
from services.online_trainer.checkpoint import TrainerState, load_checkpoint
from services.online_trainer.drift import ConceptDrift
from services.online_trainer.join import JoinedRow, LabelJoin
from services.online_trainer.labeling import LabelBudget, LabelSelector
from services.online_trainer.learner import OnlineLearner, normalize_label, numeric_features
from services.online_trainer.settings import OnlineTrainerSettings
from services.online_trainer.snapshot import register_snapshot, registered_name

logger = logging.getLogger(__name__)

SERVICE = "online_trainer"


def fresh_state(spec: UseCase) -> TrainerState:
    online = spec.models.online
    return TrainerState(
        spec_hash=spec.spec_hash(),
        learner=OnlineLearner(spec),
        join=LabelJoin(online.label_ttl_seconds, online.max_pending),
    )


class UseCaseTrainer:
    """One use case: parse, join and learn its records; keep its checkpoint."""

    def __init__(self, spec: UseCase, checkpoint_path: Path) -> None:
        self.spec = spec
        self.path = checkpoint_path
        self.features_topic = topics.features(spec.name)
        self.labels_topic = topics.labels(spec.name)
        self.predictions_topic = topics.predictions(spec.name)
        self.state = self._restore()
        self.label_selector = self._label_selector()
        self.handled_at = time.monotonic()
        self.alerts: list[DriftAlert] = []
        self.dirty = False
        self.snapshot_clock = time.monotonic()

    def _restore(self) -> TrainerState:
        state: TrainerState | None = load_checkpoint(self.path)
        if state is None:
            return fresh_state(self.spec)
        if state.spec_hash != self.spec.spec_hash():
            # A changed spec may name another model: start a new one, but from the
            # checkpoint's offsets, so that rows already learned are not replayed.
            logger.warning(
                "spec changed usecase=%s checkpoint_spec=%s: new model from offsets %s",
                self.spec.name,
                state.spec_hash[:12],
                state.offsets,
            )
            renewed = fresh_state(self.spec)
            renewed.offsets = dict(state.offsets)
            renewed.label_budget = state.label_budget  # what the last hour asked still counts
            return renewed
        logger.info(
            "resumed usecase=%s rows_learned=%d offsets=%s",
            self.spec.name,
            state.learner.rows_learned,
            state.offsets,
        )
        return state

    def _label_selector(self) -> LabelSelector | None:
        if self.spec.active_learning is None:
            return None
        if self.state.label_budget is None:
            self.state.label_budget = LabelBudget()
        return LabelSelector(self.spec, self.state.label_budget)

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this use case is consumed from."""
        return (self.features_topic, self.labels_topic, self.predictions_topic)

    @property
    def rows_learned(self) -> int:
        return self.state.learner.rows_learned

    def handle(self, record: ConsumerRecord[Any, Any]) -> None:
        """Parse one record, offer it to the join, learn what it completes."""
        state = self.state
        state.clock = max(state.clock, record.timestamp / 1000.0)
        self.dirty = True
        self.handled_at = time.monotonic()
        if record.topic == self.predictions_topic:
            if self.label_selector is not None:
                self.label_selector.offer(decode(topics.PREDICTIONS, record.value), state.clock)
            return
        if record.topic == self.features_topic:
            row = decode(topics.FEATURES, record.value)
            joined = state.join.offer_features(
                row.source_event_id,
                numeric_features(row.features),
                row.event_timestamp,
                state.clock,
            )
        else:
            label = decode(topics.LABELS, record.value)
            value = normalize_label(self.spec, label.label)
            joined = state.join.offer_label(label.event_id, value, state.clock)
        if joined is not None:
            self.learn(joined)

    def learn(self, joined: JoinedRow) -> None:
        state = self.state
        detection = state.learner.learn_one(joined.features, joined.label)
        when = joined.event_timestamp
        if when is not None:
            if state.first_event is None or when < state.first_event:
                state.first_event = when
            if state.last_event is None or when > state.last_event:
                state.last_event = when
        if detection is not None:
            state.drift_alerts += 1
            self.alerts.append(self.drift_alert(detection, joined))

    def drift_alert(self, detection: ConceptDrift, joined: JoinedRow) -> DriftAlert:
        """The ``drift.alerts`` event of a detection (its id is stable under replay)."""
        key = f"{self.spec.name}:concept:{self.state.spec_hash}:{detection.rows_learned}"
        alert_id = hashlib.sha256(key.encode()).hexdigest()[:32]
        return DriftAlert(
            event_id=alert_id,
            alert_id=alert_id,
            usecase=self.spec.name,
            kind="concept",
            # The detector fires on any change; a falling error is news, not trouble.
            severity="warning" if detection.error_after > detection.error_before else "info",
            method=detection.detector,
            features={
                "error": FeatureDrift(
                    score=detection.error_after,
                    method=detection.detector,
                    threshold=detection.error_before,
                    drifted=True,
                )
            },
            window=Window(end=joined.event_timestamp, rows=detection.window_rows),
            details={
                "detector": detection.detector,
                "error_before": detection.error_before,
                "error_after": detection.error_after,
                "rows_learned": float(detection.rows_learned),
                "source_event_id": joined.event_id,
                "model_name": registered_name(self.spec),
            },
        )

    def snapshot_due(self) -> bool:
        online = self.spec.models.online
        new_rows = self.rows_learned - self.state.rows_at_snapshot
        if new_rows <= 0:
            return False
        elapsed = time.monotonic() - self.snapshot_clock
        return new_rows >= online.snapshot_every_rows or elapsed >= online.snapshot_every_seconds

    def save(self) -> None:
        save_checkpoint(self.path, self.state)
        self.dirty = False

    def close_label_interval(self) -> bool:
        """Close an ended label-request interval while no record comes; True if it chose any.

        The clock runs on from the last record time by the seconds since it came.
        """
        if self.label_selector is None:
            return False
        idle = time.monotonic() - self.handled_at
        return self.label_selector.close_due(self.state.clock + idle) > 0


@dataclass(eq=False)
class OnlineTrainerProcessor:
    """The consume loop's processor: routes records to use cases; makes a batch durable."""

    trainers: dict[str, UseCaseTrainer]
    producer: AIOKafkaProducer
    home: Path
    workdir: Path
    mlflow_uri: str | None = None

    def __post_init__(self) -> None:
        self.by_topic = {
            topic: trainer for trainer in self.trainers.values() for topic in trainer.topics
        }

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        self.by_topic[record.topic].handle(record)

    async def flush(self) -> None:
        """Alerts out, the checkpoint, then any snapshot due; the loop commits after this."""
        for trainer in self.trainers.values():
            if trainer.dirty:
                trainer.state.join.expire(trainer.state.clock)
                await self._publish_alerts(trainer)
                if trainer.snapshot_due():
                    await self.checkpointed_snapshot(trainer)
                else:
                    trainer.save()
                await self.publish_label_requests(trainer)
                telemetry.export_state(trainer.spec.name, trainer.state)

    async def tick(self) -> None:
        """Time-based snapshots while no new records arrive."""
        for trainer in self.trainers.values():
            if not trainer.dirty and trainer.snapshot_due():
                await self.checkpointed_snapshot(trainer)
            if not trainer.dirty and trainer.close_label_interval():
                trainer.save()  # chosen, and durable, before they are published
                await self.publish_label_requests(trainer)

    async def publish_label_requests(self, trainer: UseCaseTrainer) -> None:
        """Publish the checkpointed requests to ``<uc>.label_requests``; checkpoint them sent."""
        budget = trainer.state.label_budget
        if budget is None or not budget.outbox:
            return
        topic = topics.label_requests(trainer.spec.name)
        key_of = topics.LABEL_REQUESTS.key_of
        sent = [
            await self.producer.send(topic, encode(request), key=key_of(request))
            for request in budget.outbox
        ]
        await asyncio.gather(*sent)
        budget.outbox.clear()
        trainer.save()

    async def resume_snapshots(self) -> None:
        """Finish the snapshots a killed process had checkpointed but not published."""
        for trainer in self.trainers.values():
            if trainer.state.snapshot_pending:
                logger.info("finishing the checkpointed snapshot usecase=%s", trainer.spec.name)
                await self.snapshot(trainer)
                trainer.save()

    async def checkpointed_snapshot(self, trainer: UseCaseTrainer) -> ModelCandidate:
        """Save the checkpoint marked pending, snapshot it, save it again unmarked.

        A kill anywhere in between restarts from the marked checkpoint, whose
        state gives the same snapshot key, so the snapshot is registered once.
        """
        trainer.state.snapshot_pending = True
        trainer.save()
        candidate = await self.snapshot(trainer)
        trainer.save()
        return candidate

    async def _publish_alerts(self, trainer: UseCaseTrainer) -> None:
        for alert in trainer.alerts:
            await self.producer.send_and_wait(
                topics.DRIFT_ALERTS, encode(alert), key=topics.ALERTS.key_of(alert)
            )
            telemetry.DRIFT_ALERTS.labels(trainer.spec.name).inc()
            logger.warning(
                "concept drift usecase=%s detector=%s rows_learned=%s error_before=%.4f "
                "error_after=%.4f",
                trainer.spec.name,
                alert.method,
                alert.details.get("rows_learned"),
                alert.details.get("error_before"),
                alert.details.get("error_after"),
            )
        trainer.alerts.clear()

    async def snapshot(self, trainer: UseCaseTrainer) -> ModelCandidate:
        """Register the current model in MLflow and publish it on ``models.candidates``."""
        state = trainer.state
        candidate = await asyncio.to_thread(
            register_snapshot, self.home, trainer.spec, state, self.workdir, self.mlflow_uri
        )
        await self.producer.send_and_wait(
            topics.MODELS_CANDIDATES, encode(candidate), key=topics.CANDIDATES.key_of(candidate)
        )
        state.rows_at_snapshot = state.learner.rows_learned
        state.snapshots += 1
        state.snapshot_pending = False
        trainer.snapshot_clock = time.monotonic()
        telemetry.SNAPSHOTS.labels(trainer.spec.name).inc()
        logger.info(
            "snapshot usecase=%s version=%s rows_learned=%d sha256=%s",
            trainer.spec.name,
            candidate.model_version,
            state.rows_at_snapshot,
            candidate.artifact_sha256[:12],
        )
        return candidate


class OnlineTrainer:
    """The service: every configured use case in one consume loop."""

    def __init__(self, settings: OnlineTrainerSettings, specs: dict[str, UseCase]) -> None:
        self.settings = settings
        self.specs = specs
        state_dir = settings.service_home(SERVICE)
        self.trainers = {
            name: UseCaseTrainer(spec, state_dir / "checkpoints" / f"{name}.ckpt")
            for name, spec in specs.items()
        }
        self.workdir = state_dir / "snapshots"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.processor: OnlineTrainerProcessor | None = None

    def processor_offsets(self, topic: str) -> dict[str, int]:
        """The checkpointed offsets of the use case ``topic`` belongs to."""
        assert self.processor is not None
        return self.processor.by_topic[topic].state.offsets

    async def run(self, stop: asyncio.Event, health: HealthServer | None = None) -> None:
        settings = self.settings
        # Every partition in this one process: a use case has one model.
        async with service_clients(settings, SERVICE, self.specs, mode="assign") as (
            consumer,
            producer,
        ):
            states = {name: trainer.state for name, trainer in self.trainers.items()}
            await resume_checkpointed(consumer, states, settings.bootstrap, owner=SERVICE)
            self.processor = OnlineTrainerProcessor(
                self.trainers, producer, settings.home, self.workdir, settings.mlflow_uri
            )
            await self.processor.resume_snapshots()
            for trainer in self.trainers.values():  # chosen before a stop, not yet published
                await self.processor.publish_label_requests(trainer)
            loop = checkpointed_loop(
                consumer, self.processor, producer, settings,
                service=SERVICE, checkpointed=lambda topic: self.processor_offsets(topic),
            )  # fmt: skip
            if health is not None:
                health.ready = lambda: True
            logger.info("online trainer running usecases=%s", sorted(self.specs))
            while not stop.is_set():
                await loop.run_once()
                await self.processor.tick()


async def serve(settings: OnlineTrainerSettings, stop: asyncio.Event, health: HealthServer) -> None:
    """The service body: learn every configured use case online until ``stop``."""
    await OnlineTrainer(settings, settings.load_usecases()).run(stop, health)
