"""One truth across a restart on a new broker log, and across the loss of the promotion history.

The embedded broker keeps nothing when it stops, while ``DRIFTLINE_HOME``
keeps MLflow, Feast and the checkpoints. Each test runs real service
processes (registry, online trainer, inference) on a broker of its own,
stops everything (SIGTERM as Ctrl-C does, or SIGKILL of every process,
broker included), starts a new, empty broker on the same address and the
same services on the same home. Afterwards:

- the registry has put MLflow's champion back on ``models.promotions``, and
  inference answers with the same model version;
- the online trainer kept what it learned and learns every event of the new
  log once: none skipped (its old offsets pointed past the new log's end),
  none twice;
- the registry gates a new candidate against the restored champion.

A second test deletes and recreates ``models.promotions`` (as a retention
period would empty it) and shows the same for a restarted registry and
inference.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas import topics
from schemas.events import ModelCandidate
from schemas.usecase import UseCase
from services.common.broker import EmbeddedBroker, free_port
from services.common.bus import ensure_topics
from services.common.serde import encode
from tests.online_trainer.conftest import agrawal_rows, as_events
from tests.registry.conftest import FEATURES, aliases, gate_frame, make_spec, register
from tests.reliability import tally
from tests.reliability.helpers import spec_stack, write_labeled_frame
from tests.reliability.test_sigkill_online_trainer import checkpoint, rows_learned
from tests.stack import Stack, publish_raw, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIRST_LOG_ROWS = 240
SECOND_LOG_ROWS = 160
REQUEST = [50_000.0, 0.0, 40.0, 100_000.0, 5.0, 100_000.0]  # one value a feature


@pytest.fixture
def spec(unique: str) -> UseCase:
    """Direct promotion; the online trainer takes no snapshot during the test."""
    document = make_spec(unique, mode="direct").model_dump(mode="json", exclude_none=True)
    document["models"]["online"].update(snapshot_every_rows=10**9, snapshot_every_seconds=1e9)
    return UseCase.model_validate(document)


@pytest.fixture
def stack(own_broker: EmbeddedBroker, spec: UseCase, tmp_path: Path) -> Iterator[Stack]:
    yield from spec_stack(own_broker.bootstrap, spec, tmp_path)


def new_log(broker: EmbeddedBroker, *, kill: bool) -> None:
    """The broker stops (SIGTERM, or SIGKILL) and a new, empty one starts on its address."""
    process = broker.process
    assert process is not None
    if kill:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        broker.process = None
    else:
        broker.stop()
    broker.start()


def stop_services(stack: Stack, *, kill: bool) -> None:
    if not kill:
        stack.stop_all()
        return
    for service in list(stack.processes):
        stack.kill(service)


def stream(
    stack: Stack, usecase: str, rows: list[tuple[dict[str, float], int]], prefix: str
) -> None:
    """Feature rows, then their labels, as the features topic and users carry them."""
    features, labels = as_events([({k: x[k] for k in FEATURES}, y) for x, y in rows], prefix)
    features = [{**row, "usecase": usecase} for row in features]
    publish_raw(
        stack.bootstrap, topics.features(usecase), [json.dumps(r).encode() for r in features]
    )
    publish_raw(stack.bootstrap, topics.labels(usecase), [json.dumps(r).encode() for r in labels])


def start_services(stack: Stack, usecase: str, port: int) -> None:
    common = {"DRIFTLINE_USECASES": usecase, "DRIFTLINE_HEALTH_PORT": "0"}
    stack.start("registry", DRIFTLINE_GROUP_ID=f"{usecase}-registry", **common)
    stack.start("online_trainer", DRIFTLINE_GROUP_ID=f"{usecase}-online", **common)
    stack.start("inference", DRIFTLINE_PORT=str(port), **common)


def served_version(port: int, usecase: str) -> str | None:
    """The model version inference answers ``usecase`` with, or None while it cannot."""
    body = {"entity_id": "c1", "features": dict(zip(FEATURES, REQUEST, strict=True))}
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/predict/{usecase}", json=body, timeout=5)
    except httpx.HTTPError:
        return None
    return str(answer.json()["model_version"]) if answer.status_code == 200 else None


def ours(stack: Stack, topic: str, usecase: str) -> list[dict[str, Any]]:
    return [m for m in read_topic(stack.bootstrap, topic) if m.get("usecase") == usecase]


def gate_against_champion(stack: Stack, spec: UseCase, champion: str) -> dict[str, Any]:
    """A worse candidate (good enough alone) goes in; the registry's decision on it comes back."""
    worse: ModelCandidate = register(stack.home, spec, "linear")
    publish_raw(stack.bootstrap, topics.MODELS_CANDIDATES, [encode(worse)])

    def decision() -> dict[str, Any] | None:
        found = [
            d
            for d in ours(stack, topics.MODELS_PROMOTIONS, spec.name)
            if d.get("candidate_event_id") == worse.event_id
        ]
        return found[0] if found else None

    assert wait_until(lambda: decision() is not None, 300), stack.tail("registry")
    decided = decision()
    assert decided is not None
    assert decided["action"] == "reject", decided
    assert decided["previous_version"] == champion, decided
    assert "champion" in decided["scores"], decided  # scored against it on the same rows
    return decided


def first_champion(stack: Stack, spec: UseCase) -> str:
    """A good model registered and promoted by the registry (the first model)."""
    good = register(stack.home, spec, "tree")
    publish_raw(stack.bootstrap, topics.MODELS_CANDIDATES, [encode(good)])
    champion = {"champion": good.model_version}
    assert wait_until(lambda: aliases(stack.home, spec.name) == champion, 300), stack.tail(
        "registry"
    )
    return good.model_version


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_a_restart_on_a_new_log_restores_and_skips_nothing(
    stack: Stack, own_broker: EmbeddedBroker, spec: UseCase, how: str
) -> None:
    kill = how == "sigkill"
    usecase = spec.name
    write_labeled_frame(stack.home, spec, gate_frame().astype({"label": int}), "gate")
    port = free_port()
    start_services(stack, usecase, port)
    champion = first_champion(stack, spec)
    first, second = agrawal_rows(FIRST_LOG_ROWS, seed=3), agrawal_rows(SECOND_LOG_ROWS, seed=4)
    stream(stack, usecase, first, "a")
    assert wait_until(lambda: rows_learned(stack, usecase) == FIRST_LOG_ROWS, 300), stack.tail(
        "online_trainer"
    )
    assert wait_until(lambda: served_version(port, usecase) == champion, 120), stack.tail(
        "inference"
    )
    before = checkpoint(stack, usecase)
    assert before is not None and before.log_epoch is not None

    stop_services(stack, kill=kill)
    new_log(own_broker, kill=kill)
    tally.add("faults_injected", 2)  # the services' stop and the broker's lost log

    started = time.monotonic()
    start_services(stack, usecase, port)
    assert wait_until(lambda: served_version(port, usecase) == champion, 120), stack.tail(
        "inference"
    )
    serving_after = time.monotonic() - started
    restored = ours(stack, topics.MODELS_PROMOTIONS, usecase)
    assert [(d["action"], d["model_version"]) for d in restored] == [("promote", champion)]
    assert "restored from MLflow" in restored[0]["reason"]

    # Every event of the new log is learned once, on top of the first log's.
    stream(stack, usecase, second, "b")
    total = FIRST_LOG_ROWS + SECOND_LOG_ROWS
    assert wait_until(lambda: rows_learned(stack, usecase) >= total, 300), stack.tail(
        "online_trainer"
    )
    time.sleep(2)  # anything learned twice would show now
    after = checkpoint(stack, usecase)
    assert after is not None
    lost = max(0, total - after.learner.rows_learned)
    doubled = max(0, after.learner.rows_learned - total)
    tally.add("events_checked", total)
    tally.add("events_lost", lost)
    tally.add("events_doubled", doubled)
    assert (lost, doubled) == (0, 0), f"serving after {serving_after:.1f}s"
    assert after.log_epoch is not None and after.log_epoch != before.log_epoch
    # The trainer also reads <uc>.predictions (label requests); what it learned from is these two.
    learned_from = {topics.features(usecase), topics.labels(usecase)}
    assert {
        key: at for key, at in after.offsets.items() if key[: key.rindex(":")] in learned_from
    } == {
        f"{topics.features(usecase)}:0": SECOND_LOG_ROWS,
        f"{topics.labels(usecase)}:0": SECOND_LOG_ROWS,
    }
    assert "new broker log" in stack.log("online_trainer")

    gate_against_champion(stack, spec, champion)
    tally.add("faults_survived", 2)


async def recreate(bootstrap: str, topic: str) -> None:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await client.start()
    try:
        await client.delete_topics([topic])
    finally:
        await client.close()
    for _ in range(50):  # the deletion is asynchronous on some brokers
        try:
            if await ensure_topics(bootstrap, [topic]):
                return
        except Exception:  # still being deleted
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{topic} was not recreated")


def test_a_lost_promotion_history_is_restored_from_mlflow(stack: Stack, spec: UseCase) -> None:
    usecase = spec.name
    write_labeled_frame(stack.home, spec, gate_frame().astype({"label": int}), "gate")
    port = free_port()
    start_services(stack, usecase, port)
    champion = first_champion(stack, spec)
    assert wait_until(lambda: served_version(port, usecase) == champion, 120)

    stack.stop_all()
    asyncio.run(recreate(stack.bootstrap, topics.MODELS_PROMOTIONS))
    assert ours(stack, topics.MODELS_PROMOTIONS, usecase) == []
    tally.add("faults_injected")

    start_services(stack, usecase, port)
    assert wait_until(lambda: served_version(port, usecase) == champion, 120), stack.tail(
        "inference"
    )
    decided = gate_against_champion(stack, spec, champion)
    assert aliases(stack.home, usecase) == {"champion": champion}, decided
    tally.add("faults_survived")
