"""Issue 14 point 3: a singleton's standby takes over from a SIGKILLed active one.

Two processes of the online trainer, of the registry and of the batch trainer
run with ``DRIFTLINE_STANDBY=true`` on one home (as ``driftline up --replicas
online_trainer=2,registry=2,batch_trainer=2`` starts them): one holds the lease and works,
the other stands by. The active one is SIGKILLed mid-stream; the standby
takes over within 30 s from the state the active one left (the online
trainer's checkpoint, the registry's promotion history and committed
offsets), and afterwards nothing is lost and nothing is done twice: every
row learned once, every snapshot published as one candidate, every
candidate decided once, every training request trained into one candidate.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import topics
from schemas.usecase import UseCase
from services.common.serde import encode
from tests.integration.test_replicas import Replicas
from tests.online_trainer.conftest import agrawal_rows, agrawal_spec, as_events
from tests.registry.conftest import gate_frame, make_spec, register
from tests.reliability import tally
from tests.reliability.helpers import write_labeled_frame
from tests.reliability.test_sigkill_online_trainer import checkpoint, rows_learned
from tests.stack import Stack, publish_raw, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TAKEOVER_BOUND_S = 30.0
ACTIVE = "is active: it holds the lease"
STANDING_BY = "stands by"


@pytest.fixture
def stack_for(bootstrap: str, tmp_path: Path) -> Iterator[Any]:
    """A factory: a stack whose use-case folder holds the spec given; stopped at the end."""
    made: list[Stack] = []

    def make(spec: UseCase) -> Stack:
        usecases = tmp_path / "usecases"
        usecases.mkdir()
        document = spec.model_dump(mode="json", exclude_none=True)
        (usecases / f"{spec.name}.yaml").write_text(yaml.safe_dump(document))
        made.append(Stack(bootstrap, tmp_path / "home", usecases, tmp_path))
        return made[-1]

    yield make
    for stack in made:
        stack.stop_all()


def active_and_standby(stack: Stack, replicas: Replicas) -> tuple[str, str]:
    """Wait until one replica holds the lease and the other stands by; their names."""

    def roles() -> tuple[str, str] | None:
        active = [n for n in replicas.names if stack.logged(n, ACTIVE)]
        waiting = [n for n in replicas.names if stack.logged(n, STANDING_BY)]
        if len(active) == 1 and [n for n in waiting if n not in active]:
            return active[0], next(n for n in waiting if n not in active)
        return None

    assert wait_until(lambda: roles() is not None, timeout=300), replicas.logs()
    found = roles()
    assert found is not None
    return found


def standbys(stack: Stack, service: str, usecase: str, **env: str) -> Replicas:
    """Two processes of ``service``, one lease, one group, one home."""
    same = {
        "DRIFTLINE_CONSUMER_MODE": "assign",
        "DRIFTLINE_PARTITIONS": "1",
        "DRIFTLINE_STANDBY": "true",
        "DRIFTLINE_GROUP_ID": f"{usecase}-{service}",
        "DRIFTLINE_USECASES": usecase,
        **env,
    }
    return Replicas(stack, service, 2, [same, same])


def taken_over(
    stack: Stack, standby: str, ready: str, killed_at: float, done: Any, timeout: float
) -> float:
    """Wait for ``standby`` to be ready and for ``done()``; seconds from the kill to ready."""
    assert wait_until(lambda: stack.logged(standby, ready) == 1, 60), stack.tail(standby)
    took = time.monotonic() - killed_at
    assert wait_until(done, timeout), stack.tail(standby)
    time.sleep(2)  # a second decision or candidate would land now
    return took


def sigkill(stack: Stack, name: str) -> float:
    process = stack.processes.pop(name)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    tally.add("faults_injected")
    return time.monotonic()


ROWS = 1200


def publish(stack: Stack, topic: str, messages: list[dict[str, Any]]) -> None:
    publish_raw(stack.bootstrap, topic, [json.dumps(m).encode() for m in messages])


SNAPSHOT_ROWS = 300


def test_a_standby_online_trainer_learns_on_from_the_killed_ones_checkpoint(
    stack_for: Any, unique: str
) -> None:
    usecase = unique
    spec = agrawal_spec(usecase, snapshot_every_rows=SNAPSHOT_ROWS, snapshot_every_seconds=1e9)
    stack: Stack = stack_for(spec)
    rows, labels = as_events(agrawal_rows(ROWS, seed=5))
    rows = [{**row, "usecase": usecase} for row in rows]
    publish(stack, topics.features(usecase), rows)
    trainers = standbys(
        stack, "online_trainer", usecase, DRIFTLINE_MAX_RECORDS="20", DRIFTLINE_POLL_TIMEOUT_MS="50"
    )
    active, standby = active_and_standby(stack, trainers)
    half = ROWS // 2
    publish(stack, topics.labels(usecase), labels[:half])
    assert wait_until(lambda: rows_learned(stack, usecase) >= 200, 120, 0.05), trainers.logs()
    killed_at = sigkill(stack, active)
    learned_at_kill = rows_learned(stack, usecase)
    publish(stack, topics.labels(usecase), labels[half:])

    took_over = wait_until(lambda: stack.logged(standby, ACTIVE) == 1, TAKEOVER_BOUND_S + 30)
    took = time.monotonic() - killed_at
    assert took_over, trainers.logs()
    learning = wait_until(lambda: rows_learned(stack, usecase) > learned_at_kill, 60, 0.1)
    learned_again = time.monotonic() - killed_at
    assert learning, trainers.logs()

    def consumed_everything() -> bool:
        state = checkpoint(stack, usecase)
        return state is not None and state.offsets.get(f"{topics.labels(usecase)}:0") == ROWS

    assert wait_until(consumed_everything, 120), trainers.logs()
    print(
        f"online trainer: the standby held the lease {took:.1f}s after the SIGKILL of the "
        f"active one (at {learned_at_kill} rows) and learned again {learned_again:.1f}s after it"
    )
    stack.stop_all()

    state = checkpoint(stack, usecase)
    assert state is not None
    tally.add("events_checked", ROWS)
    tally.add("events_lost", max(0, ROWS - state.learner.rows_learned))
    tally.add("events_doubled", state.join.counts["duplicates"])
    assert 0 < learned_at_kill < ROWS, "the kill did not land mid-stream"
    assert took < TAKEOVER_BOUND_S, took
    assert state.learner.rows_learned == ROWS
    assert state.join.counts["duplicates"] == 0
    assert state.join.counts["joined"] == ROWS
    # Each snapshot registered in MLflow was published as one candidate, by either process.
    from services.common import tracking

    published = [
        c for c in read_topic(stack.bootstrap, topics.MODELS_CANDIDATES) if c["usecase"] == usecase
    ]
    by_event = {c["event_id"]: c["model_version"] for c in published}
    registered = tracking.client(stack.home).search_model_versions(f"name = '{usecase}-online'")
    assert sorted(str(v.version) for v in registered) == sorted(by_event.values())
    assert state.snapshots == len(by_event) == ROWS // SNAPSHOT_ROWS
    assert stack.logged(standby, "online trainer running") == 1
    tally.add("faults_survived")


CANDIDATES = 4
KINDS = ("tree", "linear", "inverted")


def test_a_standby_registry_decides_each_pending_candidate_once(
    stack_for: Any, unique: str
) -> None:
    usecase = unique
    spec = make_spec(usecase, mode="direct")
    stack: Stack = stack_for(spec)
    candidates = [register(stack.home, spec, KINDS[i % len(KINDS)]) for i in range(CANDIDATES)]
    write_labeled_frame(stack.home, spec, gate_frame().astype({"label": int}), "gate")
    registries = standbys(stack, "registry", usecase)
    active, standby = active_and_standby(stack, registries)
    assert wait_until(lambda: stack.logged(active, "registry ready") == 1, 120), registries.logs()

    publish_raw(stack.bootstrap, topics.MODELS_CANDIDATES, [encode(c) for c in candidates])
    decided = f"decision usecase={usecase}"
    assert wait_until(lambda: stack.logged(active, decided) >= 1, 120, 0.05), registries.logs()
    killed_at = sigkill(stack, active)
    at_kill = ours(stack, usecase)

    everything = lambda: len(ours(stack, usecase)) >= CANDIDATES  # noqa: E731
    took = taken_over(stack, standby, "registry ready", killed_at, everything, 120)
    decisions = ours(stack, usecase)
    per_candidate = Counter(d["candidate_event_id"] for d in decisions)
    print(
        f"registry: the standby was ready {took:.1f}s after the SIGKILL of the active one, "
        f"with {len(at_kill)} of {CANDIDATES} candidates decided; {len(decisions)} decisions"
    )
    lost = sum(1 for c in candidates if per_candidate[c.event_id] == 0)
    tally.add("events_checked", CANDIDATES)
    tally.add("events_lost", lost)
    tally.add("events_doubled", len(decisions) - len(per_candidate))
    assert 1 <= len(at_kill) < CANDIDATES, "the kill did not land with candidates pending"
    assert sorted(per_candidate) == sorted(c.event_id for c in candidates)
    assert set(per_candidate.values()) == {1}, per_candidate
    assert took < TAKEOVER_BOUND_S, took
    tally.add("faults_survived")


def ours(stack: Stack, usecase: str) -> list[dict[str, Any]]:
    found = read_topic(stack.bootstrap, topics.MODELS_PROMOTIONS)
    return [m for m in found if m.get("usecase") == usecase]


REQUESTS = 2


def test_a_standby_batch_trainer_trains_each_pending_request_once(
    stack_for: Any, unique: str
) -> None:
    from schemas.events import TrainingRequest
    from tests.batch_trainer.conftest import agrawal_frame, binary_spec
    from tests.reliability.test_sigkill_batch_trainer import (
        EPOCHS,
        candidates,
        mid_fit,
        send_requests,
        versions,
    )

    spec = binary_spec(
        unique, batch_size=16, max_epochs=EPOCHS, patience=EPOCHS, tuning={"trials": 0}
    )
    stack: Stack = stack_for(spec)
    write_labeled_frame(stack.home, spec, agrawal_frame(1500), "train")
    trainers = standbys(stack, "batch_trainer", unique, DRIFTLINE_DEVICE="cpu", OMP_NUM_THREADS="1")
    active, standby = active_and_standby(stack, trainers)
    assert wait_until(lambda: stack.logged(active, "batch trainer ready") == 1, 120)
    requests = [TrainingRequest(usecase=unique, reason="manual") for _ in range(REQUESTS)]
    asyncio.run(send_requests(stack.bootstrap, requests))

    # SIGKILL while the first request's model is being fitted.
    fitting = lambda: mid_fit(stack.log(active), unique)  # noqa: E731
    assert wait_until(fitting, 120, 0.05), trainers.logs()
    killed_at = sigkill(stack, active)
    assert stack.logged(active, f"registered usecase={unique}") == 0

    everything = lambda: len(candidates(stack, unique)) >= REQUESTS  # noqa: E731
    took = taken_over(stack, standby, "batch trainer ready", killed_at, everything, 180)
    found = candidates(stack, unique)
    per_request = Counter(c["training_request_id"] for c in found)
    print(
        f"batch trainer: the standby was ready {took:.1f}s after the SIGKILL mid-fit; "
        f"{len(found)} candidates for {REQUESTS} requests"
    )
    tally.add("events_checked", REQUESTS)
    tally.add("events_lost", sum(1 for r in requests if per_request[r.request_id] == 0))
    tally.add("events_doubled", len(found) - len(per_request))
    assert sorted(per_request) == sorted(r.request_id for r in requests)
    assert set(per_request.values()) == {1}, per_request
    assert len(versions(stack.home, unique)) == REQUESTS
    assert took < TAKEOVER_BOUND_S, took
    tally.add("faults_survived")
