"""The registry / promoter SIGKILLed mid-stream and restarted, as a real process.

Nine real river models are registered in a temporary MLflow store, the gate's
held-out rows are written to a temporary Feast store, and the candidates go to
``models.candidates``; a storm of drift alerts goes to ``drift.alerts``, one
before the candidates, two after them and one while the registry is down. The
registry is SIGKILLed after a few decisions of the first candidates, the rest
of the candidates go out while it is down, and it is started again. (All nine
at once were decided before a kill could land: one decision takes a few
milliseconds.) Afterwards:

- every candidate has exactly one decision on ``models.promotions``: none
  missing, none decided twice;
- MLflow's ``champion`` alias is the version the decisions last promoted;
- the storm, which spans the restart, gave exactly one training request: one
  per cooldown, whether the process lived through it or not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from schemas.events import DriftAlert, SystemEvent, Window
from schemas.usecase import UseCase
from services.common.serde import encode
from tests.registry.conftest import aliases, gate_frame, make_spec, register
from tests.reliability import tally
from tests.reliability.helpers import spec_stack, write_labeled_frame
from tests.stack import Stack, publish_raw, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CANDIDATES = 9
KINDS = ("tree", "linear", "inverted")
KILL_AFTER = 3  # decisions published before the SIGKILL
BEFORE_KILL = 5  # candidates published before the SIGKILL; the rest while it is down


@pytest.fixture
def spec(unique: str) -> UseCase:
    """Direct promotion (no live trial), the default five-minute retrain cooldown."""
    return make_spec(unique, mode="direct")


@pytest.fixture
def stack(bootstrap: str, spec: UseCase, tmp_path: Path) -> Iterator[Stack]:
    yield from spec_stack(bootstrap, spec, tmp_path)


def drift_alert(usecase: str) -> DriftAlert:
    return DriftAlert(
        usecase=usecase, kind="data", severity="warning", method="ks", window=Window(rows=500)
    )


def publish(stack: Stack, topic: str, events: Sequence[SystemEvent]) -> None:
    publish_raw(stack.bootstrap, topic, [encode(event) for event in events])


def start_registry(stack: Stack, usecase: str) -> None:
    """Start the process and wait until it has replayed the history and consumes."""
    stack.start_and_wait(
        "registry",
        "registry ready",
        DRIFTLINE_GROUP_ID=f"{usecase}-registry",
        DRIFTLINE_HEALTH_PORT="0",
    )


def ours(stack: Stack, topic: str, usecase: str) -> list[dict[str, Any]]:
    return [m for m in read_topic(stack.bootstrap, topic) if m.get("usecase") == usecase]


def ids(events: Sequence[SystemEvent]) -> list[str]:
    return [event.event_id for event in events]


def tally_outcome(checked: int, lost: int, doubled: int) -> None:
    tally.add("faults_injected")
    tally.add("events_checked", checked)
    tally.add("events_lost", lost)
    tally.add("events_doubled", doubled)
    if lost == 0 and doubled == 0:
        tally.add("faults_survived")


def test_sigkilled_registry_decides_every_candidate_once(stack: Stack, spec: UseCase) -> None:
    usecase = spec.name
    candidates = [register(stack.home, spec, KINDS[i % len(KINDS)]) for i in range(CANDIDATES)]
    storm = [drift_alert(usecase) for _ in range(4)]
    frame = gate_frame()
    write_labeled_frame(stack.home, spec, frame.astype({"label": int}), "gate")
    start_registry(stack, usecase)

    publish(stack, topics.DRIFT_ALERTS, storm[:1])
    asked = lambda: stack.logged("registry", f"training request usecase={usecase}") == 1  # noqa: E731
    assert wait_until(asked, timeout=300), stack.tail("registry")
    publish(stack, topics.MODELS_CANDIDATES, candidates[:BEFORE_KILL])
    publish(stack, topics.DRIFT_ALERTS, storm[1:3])
    decided = f"decision usecase={usecase}"
    some_decided = lambda: stack.logged("registry", decided) >= KILL_AFTER  # noqa: E731
    assert wait_until(some_decided, timeout=300, interval=0.05), stack.tail("registry")
    stack.kill("registry")
    at_kill = ours(stack, topics.MODELS_PROMOTIONS, usecase)
    publish(stack, topics.DRIFT_ALERTS, storm[3:])  # while the registry is down
    publish(stack, topics.MODELS_CANDIDATES, candidates[BEFORE_KILL:])

    start_registry(stack, usecase)
    last_alert = f"alert_id={storm[-1].alert_id}"
    done = wait_until(lambda: stack.logged("registry", last_alert) >= 1, timeout=300)
    assert done, stack.tail("registry")
    everything = lambda: len(ours(stack, topics.MODELS_PROMOTIONS, usecase)) >= CANDIDATES  # noqa: E731
    assert wait_until(everything, timeout=300), stack.tail("registry")

    decisions = ours(stack, topics.MODELS_PROMOTIONS, usecase)
    requests = ours(stack, topics.TRAINING_REQUESTS, usecase)
    per_candidate = Counter(d["candidate_event_id"] for d in decisions)
    lost = sum(1 for event_id in ids(candidates) if per_candidate[event_id] == 0)
    doubled = len(decisions) - len(per_candidate) + max(0, len(requests) - 1)
    tally_outcome(len(candidates) + len(storm), lost, doubled)

    # The kill landed mid-stream: some candidates decided, the rest not yet.
    assert KILL_AFTER <= len(at_kill) <= BEFORE_KILL < CANDIDATES
    # Every candidate decided exactly once, and nothing else decided.
    assert sorted(per_candidate) == sorted(ids(candidates))
    assert len(decisions) == CANDIDATES, Counter(per_candidate.values())
    # MLflow's alias agrees with the decisions.
    promoted = [d["model_version"] for d in decisions if d["action"] == "promote"]
    assert promoted, [d["reason"] for d in decisions]
    champion = {"champion": promoted[-1]}
    assert wait_until(lambda: aliases(stack.home, usecase) == champion, timeout=60)
    # One storm within one cooldown: one training request, for the first alert.
    assert [r["alert_id"] for r in requests] == [storm[0].alert_id], requests
