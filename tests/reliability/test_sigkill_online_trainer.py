"""The online trainer, a real process, SIGKILLed twice mid-stream and restarted.

Once while feature rows are still being read (the pending label join is what
the checkpoint must carry) and once while labels are being joined and learned
(the model is). After the restarts the trainer has learned every row exactly
once: its checkpoint counts ``n`` rows learned and no duplicate joins, its
prequential metrics equal an uninterrupted in-memory run over the same rows,
every concept-drift alert it published is one the uninterrupted run raises
(each once, by id), the consumer group's committed offsets equal the
checkpoint's on both topics, and every model version it registered in MLflow
was published as one candidate (a snapshot is taken every 300 rows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import topics
from schemas.usecase import UseCase, load_usecase
from services.online_trainer.checkpoint import TrainerState, load_checkpoint
from services.online_trainer.learner import OnlineLearner, learn_stream, numeric_features
from tests.online_trainer.conftest import agrawal_rows, agrawal_spec, as_events
from tests.reliability import tally
from tests.stack import Stack, committed, publish_raw, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 2000
BATCH = "20"  # records per batch: one commit every 20 records, as far as the checkpoint goes
# A checkpoint at most this long after a batch (and whenever a poll finds nothing): a kill
# lands with rows learned since the last one, which the restart learns again from it.
CHECKPOINT_EVERY_SECONDS = "0.3"
SNAPSHOT_ROWS = 300


@pytest.fixture
def stack(bootstrap: str, unique: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    spec = agrawal_spec(unique, snapshot_every_rows=SNAPSHOT_ROWS, snapshot_every_seconds=1e9)
    (usecases / f"{unique}.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    running = Stack(bootstrap, tmp_path / "home", usecases, tmp_path)
    yield running
    running.stop_all()


def start(stack: Stack, usecase: str) -> None:
    stack.start(
        "online_trainer",
        DRIFTLINE_GROUP_ID=usecase,
        DRIFTLINE_MAX_RECORDS=BATCH,
        DRIFTLINE_POLL_TIMEOUT_MS="50",
        DRIFTLINE_CHECKPOINT_EVERY_SECONDS=CHECKPOINT_EVERY_SECONDS,
    )


def checkpoint(stack: Stack, usecase: str) -> TrainerState | None:
    path = stack.home / "online_trainer" / "checkpoints" / f"{usecase}.ckpt"
    state: TrainerState | None = load_checkpoint(path)
    return state


def pending_features(stack: Stack, usecase: str) -> int:
    state = checkpoint(stack, usecase)
    return state.join.pending["features"] if state is not None else 0


def rows_learned(stack: Stack, usecase: str) -> int:
    state = checkpoint(stack, usecase)
    return state.learner.rows_learned if state is not None else 0


def publish(stack: Stack, topic: str, messages: list[dict[str, Any]]) -> None:
    publish_raw(stack.bootstrap, topic, [json.dumps(m).encode() for m in messages])


def uninterrupted_detections(
    spec: UseCase, rows: list[dict[str, Any]], labels: list[dict[str, Any]]
) -> set[float]:
    """The ``rows_learned`` of every concept drift an uninterrupted learner detects.

    Every feature row is read before any label, so rows are learned in label order.
    """
    features = {row["source_event_id"]: numeric_features(row["features"]) for row in rows}
    learner = OnlineLearner(spec)
    found: set[float] = set()
    for label in labels:
        detection = learner.learn_one(features[label["event_id"]], label["label"])
        if detection is not None:
            found.add(float(detection.rows_learned))
    return found


def concept_alerts(bootstrap: str, usecase: str) -> list[dict[str, Any]]:
    return [
        alert
        for alert in read_topic(bootstrap, topics.DRIFT_ALERTS)
        if alert.get("usecase") == usecase and alert.get("kind") == "concept"
    ]


def test_sigkilled_trainer_learns_every_row_exactly_once(stack: Stack, unique: str) -> None:
    spec = load_usecase(Path(stack.env["DRIFTLINE_USECASES_DIR"]) / f"{unique}.yaml")
    rows, labels = as_events(agrawal_rows(ROWS, seed=21))
    rows = [{**row, "usecase": unique} for row in rows]
    features_topic, labels_topic = topics.features(unique), topics.labels(unique)

    # Kill 1: while the feature rows are being read into the join.
    # Half of each stream goes out before a kill and the rest after the restart, so a
    # kill lands mid-stream however fast the trainer is; the order is unchanged.
    half = ROWS // 2
    start(stack, unique)
    publish(stack, features_topic, rows[:half])
    done = wait_until(lambda: pending_features(stack, unique) >= 100, 300, 0.05)
    assert done, stack.tail("online_trainer")
    stack.kill("online_trainer")
    tally.add("faults_injected")
    pending_at_kill = pending_features(stack, unique)
    assert 0 < pending_at_kill < ROWS, "the first kill did not land mid-stream"

    # Kill 2: while labels are being joined and learned.
    start(stack, unique)
    publish(stack, features_topic, rows[half:])
    done = wait_until(lambda: pending_features(stack, unique) == ROWS, 300)
    assert done, stack.tail("online_trainer")
    publish(stack, labels_topic, labels[:half])
    done = wait_until(lambda: rows_learned(stack, unique) >= ROWS // 4, 300, 0.05)
    assert done, stack.tail("online_trainer")
    stack.kill("online_trainer")
    tally.add("faults_injected")
    learned_at_kill = rows_learned(stack, unique)
    assert 0 < learned_at_kill < ROWS, "the second kill did not land mid-stream"

    start(stack, unique)
    publish(stack, labels_topic, labels[half:])

    def consumed_everything() -> bool:
        state = checkpoint(stack, unique)
        return state is not None and state.offsets.get(f"{labels_topic}:0") == ROWS

    assert wait_until(consumed_everything, 300), stack.tail("online_trainer")
    stack.stop_all()

    state = checkpoint(stack, unique)
    assert state is not None
    learned = state.learner.rows_learned
    duplicates = state.join.counts["duplicates"]
    tally.add("events_checked", ROWS)
    tally.add("events_lost", max(0, ROWS - learned))
    tally.add("events_doubled", duplicates + max(0, learned - ROWS))
    assert learned == ROWS, (
        f"pending at kill 1: {pending_at_kill}, learned at kill 2: {learned_at_kill}"
    )
    assert duplicates == 0
    assert state.join.pending == {"features": 0, "labels": 0}
    assert state.join.counts["joined"] == ROWS

    # The same model as a run that was never interrupted.
    _, uninterrupted = learn_stream(spec, rows, labels)
    assert state.learner.metrics.values() == {
        k: v for k, v in uninterrupted.items() if k != "rows_learned"
    }

    # Each concept alert once by id, and exactly the uninterrupted run's detections.
    alerts = concept_alerts(stack.bootstrap, unique)
    by_id = {alert["alert_id"]: alert["details"]["rows_learned"] for alert in alerts}
    assert sorted(by_id.values()) == sorted(uninterrupted_detections(spec, rows, labels))
    assert state.drift_alerts == len(by_id)

    # The committed offsets are the checkpoint's on both topics.
    for topic in (features_topic, labels_topic):
        assert committed(stack.bootstrap, unique, topic) == state.offsets[f"{topic}:0"] == ROWS

    # MLflow and models.candidates agree: each registered version published once.
    from services.common import tracking

    published = [c for c in read_topic(stack.bootstrap, topics.MODELS_CANDIDATES)
                 if c.get("usecase") == unique]  # fmt: skip
    by_event = {c["event_id"]: c["model_version"] for c in published}
    client = tracking.client(stack.home)
    registered = client.search_model_versions(f"name = '{unique}-online'")
    assert sorted(str(v.version) for v in registered) == sorted(by_event.values())
    assert state.snapshots == len(by_event) >= ROWS // SNAPSHOT_ROWS
    tally.add("faults_survived", 2)
