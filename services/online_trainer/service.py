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
It is written on a schedule, not after every batch: at most
``checkpoint_every_seconds`` after a batch, whenever a poll finds nothing, before
a snapshot or label requests go out, and on stop. The committed offsets are
the written checkpoint's (a crash replays from it, into the model it holds).
The trainer reads every partition itself (``assign`` mode): a use case has one
model, which cannot be split across replicas.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from schemas import topics
from schemas.events import DriftAlert, ModelCandidate
from schemas.usecase import UseCase
from services.common.bus import service_clients
from services.common.checkpoint import save_checkpoint
from services.common.consume import checkpointed_loop, resume_checkpointed
from services.common.health import HealthServer
from services.common.serde import decode, encode
from services.online_trainer import telemetry
from services.online_trainer.checkpoint import CheckpointCommits, TrainerState, load_checkpoint
from services.online_trainer.drift import concept_alert
from services.online_trainer.join import JoinedRow, LabelJoin
from services.online_trainer.labeling import LabelBudget, LabelSelector
from services.online_trainer.learner import OnlineLearner, normalize_label
from services.online_trainer.rows import read_features
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
        self.dirty = False  # changed since the checkpoint was last written
        self.snapshot_clock = time.monotonic()
        self.saved_at = time.monotonic()
        # The offsets of the checkpoint last written by this process: what may be committed.
        self.saved_offsets: dict[str, int] = {}
        self.label_values: dict[tuple[type, Any], Any] = {}  # raw spelling -> class

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
        """The topics this use case is consumed from (``<uc>.predictions`` serves label
        requests only: unread for a use case that asks none)."""
        if self.label_selector is None:
            return (self.features_topic, self.labels_topic)
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
            row, features = read_features(record.value)
            joined = state.join.offer_features(
                row.source_event_id, features, row.event_timestamp, state.clock
            )
        else:
            label = decode(topics.LABELS, record.value)
            value = self.label_value(label.label)
            joined = state.join.offer_label(label.event_id, value, state.clock)
        if joined is not None:
            self.learn(joined)

    def label_value(self, raw: Any) -> Any:
        """``normalize_label`` of a raw label, remembered per spelling for a classifier."""
        key = (type(raw), raw)
        if key in self.label_values:
            return self.label_values[key]
        value = normalize_label(self.spec, raw)
        if self.spec.task == "classification" and len(self.label_values) < 256:
            self.label_values[key] = value
        return value

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
            self.alerts.append(
                concept_alert(
                    detection, joined, self.spec.name, state.spec_hash, registered_name(self.spec)
                )
            )

    def snapshot_due(self) -> bool:
        online = self.spec.models.online
        new_rows = self.rows_learned - self.state.rows_at_snapshot
        if new_rows <= 0:
            return False
        elapsed = time.monotonic() - self.snapshot_clock
        return new_rows >= online.snapshot_every_rows or elapsed >= online.snapshot_every_seconds

    def checkpoint_due(self, every_seconds: float) -> bool:
        return self.dirty and time.monotonic() - self.saved_at >= every_seconds

    def save(self) -> None:
        save_checkpoint(self.path, self.state)
        self.saved_offsets = dict(self.state.offsets)
        self.saved_at = time.monotonic()
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
    checkpoint_every_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.by_topic = {
            topic: trainer for trainer in self.trainers.values() for topic in trainer.topics
        }

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        self.by_topic[record.topic].handle(record)

    async def flush(self) -> None:
        """Alerts out, then any snapshot or checkpoint due; the loop commits after this
        (as far as the checkpoints written cover: :class:`CheckpointCommits`)."""
        for trainer in self.trainers.values():
            if trainer.dirty:
                trainer.state.join.expire(trainer.state.clock)
                await self._publish_alerts(trainer)
                if trainer.snapshot_due():
                    await self.checkpointed_snapshot(trainer)
                elif trainer.checkpoint_due(self.checkpoint_every_seconds):
                    trainer.save()
                await self.publish_label_requests(trainer)
                telemetry.export_state(trainer.spec.name, trainer.state)

    async def tick(self, idle: bool = False) -> None:
        """Time-based snapshots and label requests; the checkpoint while no records come."""
        for trainer in self.trainers.values():
            if trainer.snapshot_due():
                await self.checkpointed_snapshot(trainer)
            if trainer.close_label_interval():
                await self.publish_label_requests(trainer)
            if idle and trainer.dirty:
                trainer.save()

    def saved_offsets(self) -> list[dict[str, int]]:
        """The offsets of the checkpoints written, one map per use case."""
        return [trainer.saved_offsets for trainer in self.trainers.values()]

    async def publish_label_requests(self, trainer: UseCaseTrainer) -> None:
        """Checkpoint the chosen requests, publish them to ``<uc>.label_requests``,
        checkpoint them sent."""
        budget = trainer.state.label_budget
        if budget is None or not budget.outbox:
            return
        if trainer.dirty:
            trainer.save()  # chosen, and durable, before they are published
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

    async def run(self, stop: asyncio.Event, health: HealthServer | None = None) -> None:
        settings = self.settings
        # Every partition in this one process: a use case has one model.
        async with service_clients(settings, SERVICE, self.specs, mode="assign") as (
            consumer,
            producer,
        ):
            states = {name: trainer.state for name, trainer in self.trainers.items()}
            await resume_checkpointed(consumer, states, settings.bootstrap, owner=SERVICE)
            read = {topic for trainer in self.trainers.values() for topic in trainer.topics}
            consumer.pause(*(tp for tp in consumer.assignment() if tp.topic not in read))
            self.processor = processor = OnlineTrainerProcessor(
                self.trainers, producer, settings.home, self.workdir, settings.mlflow_uri,
                checkpoint_every_seconds=settings.checkpoint_every_seconds,
            )  # fmt: skip
            commits = CheckpointCommits(consumer, processor.saved_offsets)
            # The checkpointed offsets of the use case a topic belongs to (read once a record).
            offsets = {topic: one.state.offsets for topic, one in processor.by_topic.items()}
            await self.processor.resume_snapshots()
            for trainer in self.trainers.values():  # chosen before a stop, not yet published
                await self.processor.publish_label_requests(trainer)
            loop = checkpointed_loop(
                cast(AIOKafkaConsumer, commits), processor, producer, settings,
                service=SERVICE, checkpointed=offsets.get,
            )  # fmt: skip
            if health is not None:
                health.ready = lambda: True
            logger.info("online trainer running usecases=%s", sorted(self.specs))
            while not stop.is_set():
                idle = await loop.run_once() == 0
                await processor.tick(idle)
                if idle:
                    await commits.commit()
            for trainer in self.trainers.values():  # what was learned since, kept
                if trainer.dirty and not trainer.alerts:
                    trainer.save()
            await commits.commit()


async def serve(settings: OnlineTrainerSettings, stop: asyncio.Event, health: HealthServer) -> None:
    """The service body: learn every configured use case online until ``stop``."""
    await OnlineTrainer(settings, settings.load_usecases()).run(stop, health)
