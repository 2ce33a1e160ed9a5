"""The batch trainer SIGKILLed mid-fit and restarted, as a real process.

Three training requests for one use case go to ``training.requests``; the
trainer reads labeled rows from a temporary Feast store, fits a small torch MLP
(no tuning trials) and registers each model in a temporary MLflow store. It is
SIGKILLed while fitting the second request's model and started again.
Afterwards each request has exactly one candidate on ``models.candidates``, one
finished MLflow run and one registered model version: none lost, none trained
twice.

Then the trainer is SIGKILLed again and its committed offset put back before the
third request: the state a kill leaves between sending a candidate and
committing the request. The restarted trainer does not train that request
again: it finds the run in MLflow and republishes the same candidate event (same
event id and version), which the registry decides once by its event id.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import topics
from schemas.events import TrainingRequest
from schemas.usecase import UseCase
from services.batch_trainer.runs import REQUEST_TAG
from services.common import tracking
from services.common.bus import ensure_topics, start_producer
from services.common.serde import encode
from tests.batch_trainer.conftest import agrawal_frame, binary_spec
from tests.reliability import tally
from tests.reliability.helpers import spec_stack, write_labeled_frame
from tests.stack import Stack, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUESTS = 3
ROWS = 1500
# Twenty full epochs (patience as long, no tuning trials): a fit of a few
# seconds, long enough for the kill to land inside it.
EPOCHS = 20


@pytest.fixture
def spec(unique: str) -> UseCase:
    return binary_spec(
        unique, batch_size=16, max_epochs=EPOCHS, patience=EPOCHS, tuning={"trials": 0}
    )


@pytest.fixture
def stack(bootstrap: str, spec: UseCase, tmp_path: Path) -> Iterator[Stack]:
    yield from spec_stack(bootstrap, spec, tmp_path)


def group(usecase: str) -> str:
    # Named here (DRIFTLINE_GROUP_ID) so the test can read its committed offsets.
    return f"{usecase}-trainer"


def start_trainer(stack: Stack, usecase: str) -> None:
    """Start the process and wait until it consumes."""
    stack.start_and_wait(
        "batch_trainer",
        "batch trainer ready",
        DRIFTLINE_GROUP_ID=group(usecase),
        DRIFTLINE_DEVICE="cpu",
        DRIFTLINE_HEALTH_PORT="0",
        OMP_NUM_THREADS="1",  # the machine's cores are shared
    )


Offset = tuple[TopicPartition, int]


async def send_requests(bootstrap: str, requests: list[TrainingRequest]) -> list[Offset]:
    """Publish the requests in order; return where each one landed."""
    await ensure_topics(bootstrap, [topics.TRAINING_REQUESTS])
    producer = await start_producer(bootstrap)
    try:
        landed: list[Offset] = []
        for request in requests:
            sent = await producer.send_and_wait(topics.TRAINING_REQUESTS, encode(request))
            landed.append((TopicPartition(sent.topic, sent.partition), sent.offset))
        return landed
    finally:
        await producer.stop()


async def rewind(bootstrap: str, group_id: str, offset: Offset) -> None:
    """Commit ``offset`` for the (stopped) trainer's group: that request is redelivered."""
    partition, position = offset
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.commit({partition: position})
    finally:
        await consumer.stop()


def candidates(stack: Stack, usecase: str) -> list[dict[str, Any]]:
    found = read_topic(stack.bootstrap, topics.MODELS_CANDIDATES)
    return [c for c in found if c.get("usecase") == usecase]


def versions(home: Path, usecase: str) -> list[Any]:
    """The registered model versions of the use case's model."""
    return list(tracking.client(home).search_model_versions(f"name = '{usecase}'"))


def runs(home: Path, usecase: str) -> list[Any]:
    """The MLflow runs of the use case's experiment, one per training (the losing
    family's child run left out)."""
    experiment = tracking.client(home).get_experiment_by_name(usecase)
    if experiment is None:
        return []
    found = tracking.client(home).search_runs([experiment.experiment_id])
    return [r for r in found if "mlflow.parentRunId" not in r.data.tags]


def mid_fit(log: str, usecase: str) -> bool:
    """The log ends inside a fit: the last training set was read, no model trained from it."""
    return log.rfind(f"training data usecase={usecase}") > log.rfind(f"trained usecase={usecase}")


def tally_outcome(
    requests: list[TrainingRequest], found: list[dict[str, Any]], models: int
) -> None:
    per_request = Counter(c["training_request_id"] for c in found)
    lost = sum(1 for r in requests if per_request[r.request_id] == 0)
    doubled = len({c["event_id"] for c in found}) - len(per_request) + models - len(requests)
    tally.add("faults_injected", 2)
    tally.add("events_checked", len(requests))
    tally.add("events_lost", lost)
    tally.add("events_doubled", max(0, doubled))
    if lost == 0 and doubled == 0:
        tally.add("faults_survived", 2)


def test_sigkilled_batch_trainer_trains_every_request_once(stack: Stack, spec: UseCase) -> None:
    usecase = spec.name
    write_labeled_frame(stack.home, spec, agrawal_frame(ROWS), "train")
    requests = [TrainingRequest(usecase=usecase, reason="manual") for _ in range(REQUESTS)]
    start_trainer(stack, usecase)
    offsets = asyncio.run(send_requests(stack.bootstrap, requests))

    # Kill while the second request's model is being fitted.
    second = lambda: stack.logged("batch_trainer", f"training data usecase={usecase}") >= 2  # noqa: E731
    assert wait_until(second, timeout=300, interval=0.05), stack.tail("batch_trainer")
    stack.kill("batch_trainer")
    log_at_kill = stack.log("batch_trainer")
    at_kill = (len(candidates(stack, usecase)), len(versions(stack.home, usecase)))

    start_trainer(stack, usecase)
    every_request = lambda: len(candidates(stack, usecase)) >= REQUESTS  # noqa: E731
    assert wait_until(every_request, timeout=300), stack.tail("batch_trainer")
    after_restart = candidates(stack, usecase)

    # The state a kill leaves after the third candidate was sent, before its commit.
    stack.kill("batch_trainer")
    asyncio.run(rewind(stack.bootstrap, group(usecase), offsets[-1]))
    start_trainer(stack, usecase)
    again = f"request_id={requests[-1].request_id} already trained: republishing"
    done = wait_until(lambda: stack.logged("batch_trainer", again) == 1, timeout=300)
    assert done, stack.tail("batch_trainer")
    assert wait_until(lambda: len(candidates(stack, usecase)) > REQUESTS, timeout=120)

    found = candidates(stack, usecase)
    models = versions(stack.home, usecase)
    tally_outcome(requests, found, len(models))

    # The first kill landed mid-fit of the second request: one model done, no more.
    assert mid_fit(log_at_kill, usecase), log_at_kill[-3000:]
    assert log_at_kill.count(f"registered usecase={usecase}") == 1
    assert at_kill == (1, 1)
    # After the restart: one candidate per request, each sent once.
    request_ids = sorted(r.request_id for r in requests)
    assert sorted(c["training_request_id"] for c in after_restart) == request_ids
    # One registered version and one finished run per request.
    assert sorted(m.tags[REQUEST_TAG] for m in models) == request_ids
    numbers = sorted(str(m.version) for m in models)
    assert sorted(c["model_version"] for c in after_restart) == numbers
    finished = [r for r in runs(stack.home, usecase) if r.info.status == "FINISHED"]
    assert len(runs(stack.home, usecase)) == len(finished) == REQUESTS
    # The redelivered request was not trained again: the same event, sent again.
    assert found[:REQUESTS] == after_restart and len(found) == REQUESTS + 1
    assert found[-1] == next(
        c for c in after_restart if c["training_request_id"] == requests[-1].request_id
    )
    assert stack.logged("batch_trainer", f"training data usecase={usecase}") == REQUESTS + 1
