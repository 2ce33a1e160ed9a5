"""The console's buttons: the same events the ``driftline`` verbs publish.

- retrain: a manual ``training.requests`` event (``driftline retrain UC``);
- rollback: a ``rollback`` on ``models.promotions`` to the champion before the
  current one, or, with none but a running trial, the end of the trial
  (``driftline rollback UC``);
- promote: a manual ``promote`` of the running challenger (canary or shadow),
  with the artifact and sha256 its trial was started with. ``driftline
  promote UC VERSION`` can promote any version in MLflow; the console promotes
  what is on trial, so it needs no MLflow client in this process.

The lineup comes from the promotion history the service folds as it reads.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.events import Promotion, SystemEvent, TrainingRequest
from services.common.promotions.history import UseCaseHistory
from services.common.serde import encode


class NothingToDo(ValueError):
    """The action does not apply to the lineup as it is (no trial, no earlier champion)."""


def retrain(usecase: str) -> TrainingRequest:
    return TrainingRequest(usecase=usecase, reason="manual", requested_by="console")


def rollback(usecase: str, state: UseCaseHistory) -> Promotion:
    """What ``driftline rollback`` publishes for this lineup."""
    plan = state.manual_rollback("console")
    if plan is None:
        raise NothingToDo(f"{usecase} has no earlier champion and no running trial to roll back")
    return plan.event(usecase)


def promote(usecase: str, state: UseCaseHistory) -> Promotion:
    """A manual promotion of the challenger on trial."""
    trial = state.challenger
    if trial is None:
        raise NothingToDo(f"{usecase} has no challenger on trial to promote")
    return Promotion(
        usecase=usecase,
        action="promote",
        model_name=trial.model.name,
        model_version=trial.model.version,
        previous_version=state.champion.version if state.champion else None,
        artifact_uri=trial.model.artifact_uri,
        artifact_sha256=trial.model.artifact_sha256,
        reason=f"manual promotion (console) of the {trial.mode}",
    )


async def publish(producer: AIOKafkaProducer, event: SystemEvent) -> str:
    """Send ``event`` to its topic keyed as the CLI keys it; returns the topic."""
    topic = topics.MODELS_PROMOTIONS if isinstance(event, Promotion) else topics.TRAINING_REQUESTS
    # A state topic is compacted: keyed by event id, compaction keeps every event.
    key = event.event_id if topics.kind_of(topic) == "state" else event.usecase
    await producer.send_and_wait(topic, encode(event), key=key.encode())
    return topic
