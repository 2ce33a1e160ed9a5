"""The service on the real broker: a training request in, a candidate or a dead letter out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiokafka import AIOKafkaConsumer

from schemas import topics
from schemas.events import DeadLetter, ModelCandidate, TrainingRequest, Window
from schemas.usecase import UseCase
from services.batch_trainer.service import run
from services.batch_trainer.settings import BatchTrainerSettings
from services.common.bus import ensure_topics, start_producer
from services.common.health import HealthServer
from services.common.serde import encode
from tests.batch_trainer.conftest import START, agrawal_frame, binary_spec

pytestmark = pytest.mark.integration


async def _read(
    bootstrap: str, topic: str, keep: Callable[[dict[str, Any]], bool], count: int, timeout: float
) -> list[dict[str, Any]]:
    """The first ``count`` messages of ``topic`` that ``keep`` accepts (topics are shared)."""
    import json

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    value = json.loads(record.value)
                    if keep(value):
                        found.append(value)
    finally:
        await consumer.stop()
    return found


async def test_requests_become_candidates_or_dead_letters(
    bootstrap: str, home: Path, unique: str
) -> None:
    small = f"{unique}_small"
    stranger = f"{unique}_unknown"
    served: dict[str, UseCase] = {
        unique: binary_spec(unique),
        small: binary_spec(small, min_rows=1000),
    }
    await ensure_topics(
        bootstrap,
        [topics.TRAINING_REQUESTS, topics.MODELS_CANDIDATES, topics.deadletter(small),
         topics.deadletter(stranger)],
    )  # fmt: skip
    windows: list[Window] = []

    def data_source(spec: UseCase, window: Window) -> pd.DataFrame:
        windows.append(window)
        return agrawal_frame(240)

    settings = BatchTrainerSettings(bootstrap=bootstrap, home=home, group_id=f"{unique}-trainer")
    stop = asyncio.Event()
    health = HealthServer("batch_trainer", "127.0.0.1", 0)
    service = asyncio.create_task(run(settings, data_source, stop, health, served=served))
    good = TrainingRequest(usecase=unique, reason="manual")
    producer = await start_producer(bootstrap)
    try:
        for request in (
            good,
            TrainingRequest(usecase=small, reason="schedule"),
            TrainingRequest(usecase=stranger, reason="drift", alert_id="a1"),
            good,  # redelivered: the same candidate again, no second training
        ):
            await producer.send_and_wait(topics.TRAINING_REQUESTS, encode(request))
        candidates = await _read(
            bootstrap, topics.MODELS_CANDIDATES, lambda v: v.get("usecase") == unique, 2, 90
        )
        dead_small = await _read(bootstrap, topics.deadletter(small), lambda v: True, 1, 30)
        dead_stranger = await _read(bootstrap, topics.deadletter(stranger), lambda v: True, 1, 30)
    finally:
        await producer.stop()
        stop.set()
        await asyncio.wait_for(service, 30)

    assert len(candidates) == 2
    first, again = (ModelCandidate.model_validate(c) for c in candidates)
    assert first == again  # republished from MLflow, same event id and version
    assert first.training_request_id == good.request_id
    assert first.trainer == "batch" and first.family in ("mlp", "linear")
    assert first.flavor == {"mlp": "torch", "linear": "linear"}[first.family]
    assert set(first.validation_scores or {}) == {"mlp", "linear"}
    assert "roc_auc" in first.metrics and first.baseline_metrics
    assert first.data_window.end == good.occurred_at
    now = pd.Timestamp.now(tz="UTC")
    warm_up = [w for w in windows if w.end is not None and w.end > now]  # empty, at start
    asked = [w for w in windows if w not in warm_up]
    assert len(warm_up) == 2  # the warm-up opened the source once per use case
    assert len(asked) == 2  # the good request once, the small one once; not the repeat

    # The plots and the runner-up came after the candidate was out; the run has them all.
    from services.common import tracking

    client = tracking.client(home)
    finished = client.get_run(first.run_id or "")
    assert finished.info.status == "FINISHED"
    plots = {a.path for a in client.list_artifacts(first.run_id or "", "plots")}
    assert {"plots/loss_curves.png", "plots/confusion_matrix.png", "plots/roc_curve.png"} <= plots
    children = client.search_runs(
        [finished.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{first.run_id}'"
    )
    assert len(children) == 1

    refused = DeadLetter.model_validate(dead_small[0])
    assert refused.service == "batch_trainer"
    assert "240 labelled rows in the window, 1000 needed" in refused.reason
    unknown = DeadLetter.model_validate(dead_stranger[0])
    assert f"unknown use case {stranger!r}" in unknown.reason
    assert unknown.error_type == "UnknownUseCase"


async def test_a_waiting_drift_request_reads_the_cheap_count_until_it_is_enough(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = binary_spec(unique, min_rows=200)
    await ensure_topics(bootstrap, [topics.TRAINING_REQUESTS, topics.MODELS_CANDIDATES])
    counts = iter([0, 150, 240])
    counted: list[int] = []
    reads: list[Window] = []

    def row_count(spec: UseCase, window: Window) -> int:
        counted.append(next(counts, 240))
        return counted[-1]

    def data_source(spec: UseCase, window: Window) -> pd.DataFrame:
        reads.append(window)
        return agrawal_frame(240)

    settings = BatchTrainerSettings(
        bootstrap=bootstrap,
        home=home,
        group_id=f"{unique}-trainer",
        warm_up=False,
        data_wait_interval_seconds=0.05,
    )
    stop = asyncio.Event()
    health = HealthServer("batch_trainer", "127.0.0.1", 0)
    served = {unique: spec}
    service = asyncio.create_task(
        run(settings, data_source, stop, health, served=served, row_count=row_count)
    )
    started = START  # the frame's first row: the window holds all 240
    drift = TrainingRequest(
        usecase=unique, reason="drift", alert_id="a1", window=Window(start=started)
    )
    producer = await start_producer(bootstrap)
    try:
        await producer.send_and_wait(topics.TRAINING_REQUESTS, encode(drift))
        candidates = await _read(
            bootstrap, topics.MODELS_CANDIDATES, lambda v: v.get("usecase") == unique, 1, 90
        )
    finally:
        await producer.stop()
        stop.set()
        await asyncio.wait_for(service, 30)
    assert len(candidates) == 1
    assert counted[:3] == [0, 150, 240]  # two counts short of min_rows: waited, no read
    assert len(reads) == 1  # the training set was read once, when the count was enough


async def test_a_request_waiting_for_data_is_stopped_at_once_and_read_again_at_start(
    bootstrap: str, home: Path, unique: str
) -> None:
    """A stop ends a wait for data at once (it used to sleep on in its thread until
    ``driftline up`` killed the service); the request is not committed, so the next start
    trains it, and it is no dead letter."""
    spec = binary_spec(unique, min_rows=200)
    await ensure_topics(bootstrap, [topics.TRAINING_REQUESTS, topics.MODELS_CANDIDATES])
    enough = False
    counted: list[int] = []

    def row_count(spec: UseCase, window: Window) -> int:
        counted.append(240 if enough else 0)
        return counted[-1]

    def data_source(spec: UseCase, window: Window) -> pd.DataFrame:
        return agrawal_frame(240)

    settings = BatchTrainerSettings(
        bootstrap=bootstrap,
        home=home,
        group_id=f"{unique}-trainer",
        warm_up=False,
        data_wait_seconds=600,
        data_wait_interval_seconds=60,
    )

    def start(stop: asyncio.Event) -> asyncio.Task[None]:
        health = HealthServer("batch_trainer", "127.0.0.1", 0)
        served = {unique: spec}
        return asyncio.create_task(
            run(settings, data_source, stop, health, served=served, row_count=row_count)
        )

    first_stop = asyncio.Event()
    first = start(first_stop)
    drift = TrainingRequest(
        usecase=unique, reason="drift", alert_id="a1", window=Window(start=START)
    )
    producer = await start_producer(bootstrap)
    try:
        await producer.send_and_wait(topics.TRAINING_REQUESTS, encode(drift))
        for _ in range(600):  # until the request is waiting
            if counted:
                break
            await asyncio.sleep(0.05)
        assert counted == [0]
        first_stop.set()
        stopped_at = time.monotonic()
        await asyncio.wait_for(first, 10)
        assert time.monotonic() - stopped_at < 5  # not the 60 s of its wait
        enough = True
        second_stop = asyncio.Event()
        second = start(second_stop)
        candidates = await _read(
            bootstrap, topics.MODELS_CANDIDATES, lambda v: v.get("usecase") == unique, 1, 90
        )
        second_stop.set()
        await asyncio.wait_for(second, 30)
    finally:
        await producer.stop()
    assert len(candidates) == 1  # read again and trained: it was neither committed nor lost
    assert counted[0] == 0 and counted[-1] == 240
    await ensure_topics(bootstrap, [topics.deadletter(unique)])
    assert await _read(bootstrap, topics.deadletter(unique), lambda v: True, 1, 2) == []
