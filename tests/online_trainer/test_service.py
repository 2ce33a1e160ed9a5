"""The online trainer against the real embedded broker and a real MLflow store."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from schemas import topics
from schemas.events import DriftAlert, ModelCandidate
from schemas.usecase import UseCase
from services.common.bus import ensure_topics, start_consumer, start_producer
from services.common.models import load_model
from services.common.models.river_model import RiverModel
from services.common.serde import decode
from services.online_trainer.checkpoint import load_checkpoint
from services.online_trainer.learner import learn_stream
from services.online_trainer.service import OnlineTrainer
from services.online_trainer.settings import OnlineTrainerSettings
from tests.online_trainer.conftest import agrawal_rows, agrawal_spec, as_events

pytestmark = pytest.mark.integration


def settings_for(bootstrap: str, home: Path, group: str, **extra: Any) -> OnlineTrainerSettings:
    return OnlineTrainerSettings(
        bootstrap=bootstrap, home=home, group_id=group, poll_timeout_ms=50, **extra
    )


async def publish(bootstrap: str, topic: str, messages: list[dict[str, Any]]) -> None:
    producer = await start_producer(bootstrap)
    try:
        for message in messages:
            await producer.send(topic, json.dumps(message).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


async def read_all(bootstrap: str, topic: str, usecase: str) -> list[Any]:
    consumer = await start_consumer(bootstrap, [topic], None)
    try:
        await consumer.seek_to_beginning()
        events = []
        while batches := await consumer.getmany(timeout_ms=500):
            for records in batches.values():
                events.extend(decode(r.topic, r.value) for r in records)
        return [e for e in events if e.usecase == usecase]
    finally:
        await consumer.stop()


def named(spec: UseCase, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "usecase": spec.name} for row in rows]


async def test_restart_learns_every_row_exactly_once(
    bootstrap: str, home: Path, unique: str
) -> None:
    n = 600
    spec = agrawal_spec(unique, snapshot_every_rows=10**9, snapshot_every_seconds=1e9)
    await ensure_topics(bootstrap, [topics.features(unique), topics.labels(unique)])
    rows, labels = as_events(agrawal_rows(n, seed=21))
    # A checkpoint after every batch of 20: the cancel lands with one a batch behind.
    settings = settings_for(bootstrap, home, unique, max_records=20, checkpoint_every_seconds=0.0)
    await publish(bootstrap, topics.features(unique), named(spec, rows))

    first = OnlineTrainer(settings, {unique: spec})
    trainer = first.trainers[unique]
    task = asyncio.create_task(first.run(asyncio.Event()))
    await until(lambda: trainer.state.join.pending["features"] == n)
    await publish(bootstrap, topics.labels(unique), labels)
    await until(lambda: trainer.rows_learned >= n // 2)
    task.cancel()  # abrupt: no final checkpoint, no clean shutdown
    with contextlib.suppress(asyncio.CancelledError):
        await task
    interrupted_at = trainer.rows_learned
    assert n // 2 <= interrupted_at < n

    second = OnlineTrainer(settings, {unique: spec})
    resumed = second.trainers[unique]
    assert 0 < resumed.rows_learned <= interrupted_at
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    await until(lambda: resumed.rows_learned >= n)
    await asyncio.sleep(0.5)  # room for any row that would be learned twice
    stop.set()
    await task

    assert resumed.rows_learned == n
    assert resumed.state.join.counts["duplicates"] == 0
    _, uninterrupted = learn_stream(spec, rows, labels)
    assert resumed.state.learner.metrics.values() == {
        k: v for k, v in uninterrupted.items() if k != "rows_learned"
    }
    # The checkpoint and the committed offsets agree.
    consumer = await start_consumer(bootstrap, [topics.labels(unique)], unique)
    try:
        committed = await consumer.committed(TopicPartition(topics.labels(unique), 0))
    finally:
        await consumer.stop()
    assert committed == resumed.state.offsets[f"{topics.labels(unique)}:0"] == n


async def committed_offset(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = await start_consumer(bootstrap, [topic], group)
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


async def until_committed(bootstrap: str, group: str, topic: str, offset: int) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while await committed_offset(bootstrap, group, topic) != offset:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{topic}: offset {offset} not committed in time")
        await asyncio.sleep(0.1)


async def test_a_checkpoint_waits_for_its_schedule_and_commits_cover_only_it(
    bootstrap: str, home: Path, unique: str
) -> None:
    n = 300
    spec = agrawal_spec(unique, snapshot_every_rows=10**9, snapshot_every_seconds=1e9)
    features, labels_topic = topics.features(unique), topics.labels(unique)
    await ensure_topics(bootstrap, [features, labels_topic])
    rows, labels = as_events(agrawal_rows(n, seed=22))
    await publish(bootstrap, features, named(spec, rows))
    await publish(bootstrap, labels_topic, labels)
    # No checkpoint is due, and a poll waits a minute before it finds nothing (idle).
    settings = settings_for(
        bootstrap, home, unique, max_records=20, checkpoint_every_seconds=1e9
    ).model_copy(update={"poll_timeout_ms": 60_000})
    first = OnlineTrainer(settings, {unique: spec})
    trainer = first.trainers[unique]
    task = asyncio.create_task(first.run(asyncio.Event()))
    await until(lambda: trainer.rows_learned == n)
    # Every row learned over 30 batches, none written: nothing is committed past the file.
    assert not trainer.path.exists()
    assert await committed_offset(bootstrap, unique, labels_topic) is None
    task.cancel()  # abrupt: what was learned since the last checkpoint is lost
    with contextlib.suppress(asyncio.CancelledError):
        await task

    # A restart replays every row into the model the checkpoint holds (here: none), once;
    # with the default schedule the first poll that finds nothing writes the checkpoint.
    second = OnlineTrainer(settings_for(bootstrap, home, unique), {unique: spec})
    resumed = second.trainers[unique]
    assert resumed.rows_learned == 0
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    await until_committed(bootstrap, unique, labels_topic, n)
    saved = load_checkpoint(trainer.path)
    assert saved.learner.rows_learned == n and saved.join.counts["duplicates"] == 0
    assert await committed_offset(bootstrap, unique, labels_topic) == n
    assert await committed_offset(bootstrap, unique, features) == n
    # Learned after that checkpoint, then a stop: the stop writes it. A use case that asks
    # for no labels does not read <uc>.predictions (it serves label requests only).
    await ensure_topics(bootstrap, [topics.predictions(unique)])
    await publish(bootstrap, topics.predictions(unique), [{"not": "read"}])
    more_rows, more_labels = as_events(agrawal_rows(40, seed=23), offset=n)
    await publish(bootstrap, features, named(spec, more_rows))
    await publish(bootstrap, labels_topic, more_labels)
    await until(lambda: resumed.rows_learned == n + 40)
    stop.set()
    await task
    assert load_checkpoint(trainer.path).learner.rows_learned == n + 40
    assert await committed_offset(bootstrap, unique, labels_topic) == n + 40
    assert resumed.saved_offsets[f"{labels_topic}:0"] == n + 40
    assert sorted(resumed.saved_offsets) == [f"{features}:0", f"{labels_topic}:0"]

    _, uninterrupted = learn_stream(spec, rows + more_rows, labels + more_labels)
    assert resumed.state.learner.metrics.values() == {
        k: v for k, v in uninterrupted.items() if k != "rows_learned"
    }


async def test_concept_change_raises_a_concept_alert(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = agrawal_spec(unique, snapshot_every_rows=10**9, snapshot_every_seconds=1e9)
    await ensure_topics(
        bootstrap, [topics.features(unique), topics.labels(unique), topics.DRIFT_ALERTS]
    )
    before = agrawal_rows(1500, seed=1, function=0)
    after = agrawal_rows(1500, seed=101, function=4)  # the concept changes at row 1500
    rows, labels = as_events(before + after)
    await publish(bootstrap, topics.features(unique), named(spec, rows))
    await publish(bootstrap, topics.labels(unique), labels)

    service = OnlineTrainer(settings_for(bootstrap, home, unique), {unique: spec})
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await until(lambda: service.trainers[unique].rows_learned == 3000)
    stop.set()
    await task

    alerts = [a for a in await read_all(bootstrap, topics.DRIFT_ALERTS, unique)]
    concept = [a for a in alerts if isinstance(a, DriftAlert) and a.kind == "concept"]
    raised = [a for a in concept if a.severity == "warning" and a.details["rows_learned"] > 1500]
    assert raised, f"no concept alert after the change: {concept}"
    first = raised[0]
    assert first.details["rows_learned"] < 1500 + 1000
    assert first.details["error_after"] > first.details["error_before"]
    assert first.method == "adwin"


async def test_snapshot_registers_a_model_version_that_loads_back(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = agrawal_spec(unique, snapshot_every_rows=150, snapshot_every_seconds=1e9)
    await ensure_topics(
        bootstrap, [topics.features(unique), topics.labels(unique), topics.MODELS_CANDIDATES]
    )
    rows, labels = as_events(agrawal_rows(200, seed=4))
    await publish(bootstrap, topics.features(unique), named(spec, rows))
    bad = [{"event_id": "e0", "label": "maybe", "timestamp": "2026-01-01T00:00:00Z"}, {"x": 1}]
    await publish(bootstrap, topics.labels(unique), bad + labels)

    service = OnlineTrainer(settings_for(bootstrap, home, unique), {unique: spec})
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await until(lambda: service.trainers[unique].state.snapshots >= 1, timeout=120)
    stop.set()
    await task

    candidates = [
        c
        for c in await read_all(bootstrap, topics.MODELS_CANDIDATES, unique)
        if isinstance(c, ModelCandidate)
    ]
    assert len(candidates) == 1
    dead = await read_all(bootstrap, topics.deadletter(unique), unique)
    assert sorted(d.reason.split(":")[0] for d in dead) == [
        "label 'maybe' is not one of the classes [0, 1]",
        "not a label",
    ]
    assert service.trainers[unique].rows_learned == 200
    candidate = candidates[0]
    assert (candidate.model_name, candidate.trainer, candidate.flavor) == (
        f"{unique}-online",
        "online",
        "river",
    )
    assert {"accuracy", "roc_auc", "log_loss", "rolling_accuracy"} <= set(candidate.metrics)
    assert candidate.data_window.rows == int(candidate.lineage["rows_learned"]) >= 150
    assert candidate.lineage["spec_hash"] == spec.spec_hash()

    from services.common import tracking

    client = tracking.client(home)
    version = client.get_model_version(candidate.model_name, candidate.model_version)
    assert version.tags["artifact_sha256"] == candidate.artifact_sha256
    local = tracking.download_model_dir(client, candidate.artifact_uri, home / "download")
    model = load_model(local, expected_sha256=candidate.artifact_sha256)
    assert isinstance(model, RiverModel)
    assert set(model.predict_proba([rows[0]["features"]])[0]) == {0, 1}
    run = client.get_run(candidate.run_id or "")
    assert run.data.metrics["accuracy"] == candidate.metrics["accuracy"]


async def test_a_checkpointed_snapshot_is_published_on_restart_and_registered_once(
    bootstrap: str, home: Path, unique: str
) -> None:
    from services.common import tracking
    from services.online_trainer.snapshot import register_snapshot

    spec = agrawal_spec(unique, snapshot_every_rows=10**9, snapshot_every_seconds=1e9)
    await ensure_topics(
        bootstrap, [topics.features(unique), topics.labels(unique), topics.MODELS_CANDIDATES]
    )
    killed = OnlineTrainer(settings_for(bootstrap, home, unique), {unique: spec})
    trainer = killed.trainers[unique]
    for features, label in agrawal_rows(100, seed=2):
        trainer.state.learner.learn_one(features, label)
    # Killed after the checkpoint marked the snapshot and MLflow recorded it, before
    # the candidate reached models.candidates.
    trainer.state.snapshot_pending = True
    trainer.save()
    recorded = register_snapshot(home, spec, trainer.state, killed.workdir)

    service = OnlineTrainer(settings_for(bootstrap, home, unique), {unique: spec})
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await until(lambda: service.trainers[unique].state.snapshots == 1, timeout=120)
    stop.set()
    await task

    published = await read_all(bootstrap, topics.MODELS_CANDIDATES, unique)
    assert published == [recorded]
    found = tracking.client(home).search_model_versions(f"name = '{recorded.model_name}'")
    assert [str(v.version) for v in found] == [recorded.model_version]
    assert load_checkpoint(trainer.path).snapshot_pending is False
