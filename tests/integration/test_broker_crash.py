"""The embedded broker SIGKILLed while events flow, and a new, empty one on its address.

Real service processes (ingestion, features, online trainer, registry, drift
detector, inference) run on a broker of the test's own while raw events
stream in. Mid-stream the broker is killed and another starts on the same
address: a new log. No service is restarted. Each notices the new log,
starts again in its process from its durable state, and the events of the
new log go all the way through:

- every new-log event is in the offline store once (none lost, none twice),
  and no event is there twice (what was durable before the crash stays once);
- the online trainer learns every new-log row once (its labels arrive on the
  new log only), from the beginning of the new log;
- every process is the one the test started.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas import topics
from schemas.usecase import load_usecase
from services.common import dataset, featurestore
from services.common.broker import EmbeddedBroker, free_port
from tests.integration.test_ingest_path import valid_events
from tests.reliability import tally
from tests.reliability.test_sigkill_online_trainer import checkpoint, rows_learned
from tests.stack import ROOT, Stack, publish_raw, usecase_copy, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OLD_LOG = 1500
NEW_LOG = 600
SERVICES = ("ingestion", "features", "online_trainer", "registry", "drift_detector")


@pytest.fixture
def stack(own_broker: EmbeddedBroker, unique: str, tmp_path: Path) -> Iterator[Stack]:
    usecase_copy(ROOT / "usecases" / "credit.yaml", tmp_path / "usecases", unique)
    running = Stack(own_broker.bootstrap, tmp_path / "home", tmp_path / "usecases", tmp_path)
    yield running
    running.stop_all()


def stored_ids(stack: Stack, usecase: str) -> Counter[str]:
    frame = dataset.read_dataset(featurestore.features_dir(stack.home, usecase))
    if frame is None or frame.empty:
        return Counter()
    return Counter(frame[featurestore.EVENT_ID])


def publish(stack: Stack, topic: str, messages: list[dict[str, Any]]) -> None:
    publish_raw(stack.bootstrap, topic, [json.dumps(m).encode() for m in messages])


def test_a_broker_killed_mid_stream_is_survived_without_restarting_a_service(
    stack: Stack, own_broker: EmbeddedBroker, unique: str
) -> None:
    spec = load_usecase(stack_usecase(stack, unique))
    events = valid_events(spec, OLD_LOG + NEW_LOG)
    old, new = events[:OLD_LOG], events[OLD_LOG:]
    api = free_port()
    env = {"DRIFTLINE_HEALTH_PORT": "0", "DRIFTLINE_USECASES": unique}
    for service in SERVICES:
        stack.start(service, **env)
    stack.start("inference", DRIFTLINE_PORT=str(api), **env)
    started = dict(stack.processes)

    # The stack is up and storing; then events flow in chunks while the broker is killed.
    publish(stack, topics.raw(unique), old[:300])
    assert wait_until(lambda: sum(stored_ids(stack, unique).values()) >= 200, 300), stack.tail(
        "features"
    )
    flowing = threading.Thread(target=stream_slowly, args=(stack, unique, old[300:]), daemon=True)
    flowing.start()
    time.sleep(1.5)
    assert own_broker.process is not None
    own_broker.process.send_signal(signal.SIGKILL)
    own_broker.process.wait(10)
    own_broker.process = None
    flowing.join(120)
    durable_at_crash = set(stored_ids(stack, unique))
    assert 0 < len(durable_at_crash) < OLD_LOG, "the kill did not land mid-stream"
    own_broker.start()  # a new, empty log on the same address
    tally.add("faults_injected")

    publish(stack, topics.raw(unique), new)
    new_ids = {event["event_id"] for event in new}
    arrived = lambda: new_ids <= set(stored_ids(stack, unique))  # noqa: E731
    assert wait_until(arrived, 300), stack.tail("ingestion") + stack.tail("features")
    labels = [
        {"event_id": e["event_id"], "label": i % 2, "timestamp": e["timestamp"]}
        for i, e in enumerate(new)
    ]
    publish(stack, topics.labels(unique), labels)
    assert wait_until(lambda: rows_learned(stack, unique) >= NEW_LOG, 300), stack.tail(
        "online_trainer"
    )
    time.sleep(3)  # room for anything applied twice to show

    stored = stored_ids(stack, unique)
    lost = len(new_ids - set(stored)) + len(durable_at_crash - set(stored))
    doubled = sum(count - 1 for count in stored.values() if count > 1)
    learned = rows_learned(stack, unique)
    tally.add("events_checked", len(new_ids) + len(durable_at_crash))
    tally.add("events_lost", lost)
    tally.add("events_doubled", doubled + max(0, learned - NEW_LOG))
    assert (lost, doubled) == (0, 0)
    assert learned == NEW_LOG

    # The trainer checkpoints on a schedule (DRIFTLINE_CHECKPOINT_EVERY_SECONDS): its next
    # checkpoint covers every label of the new log, and nothing beyond it.
    def covered() -> bool:
        state = checkpoint(stack, unique)
        return state is not None and state.offsets[f"{topics.labels(unique)}:0"] >= NEW_LOG

    assert wait_until(covered, 60), stack.tail("online_trainer")
    state = checkpoint(stack, unique)
    assert state is not None and state.offsets[f"{topics.labels(unique)}:0"] == NEW_LOG
    # Nobody was restarted: the same processes, each of which saw the new log.
    for name, process in started.items():
        assert process.poll() is None, f"{name} exited: {stack.tail(name)}"
    # Each started its body again on the new log; one caught starting up (waiting on the
    # dead broker, deaf to its stop) is cancelled after the runtime's grace.
    again = "starting again from the durable state"
    restarted = lambda: all(stack.logged(name, again) >= 1 for name in SERVICES)  # noqa: E731
    assert wait_until(restarted, 60), {name: stack.logged(name, again) for name in SERVICES}
    assert stack.logged("inference", "new broker log") >= 1, stack.tail("inference")
    assert httpx.get(f"http://127.0.0.1:{api}/readyz", timeout=5).status_code == 200
    tally.add("faults_survived")


def stack_usecase(stack: Stack, usecase: str) -> Path:
    return Path(stack.env["DRIFTLINE_USECASES_DIR"]) / f"{usecase}.yaml"


def stream_slowly(stack: Stack, usecase: str, events: list[dict[str, Any]]) -> None:
    """Publish in chunks of 100; what cannot be sent once the broker is gone is dropped."""
    for start in range(0, len(events), 100):
        try:
            publish(stack, topics.raw(usecase), events[start : start + 100])
        except Exception:  # the broker was killed: the rest of the old log never existed
            return
        time.sleep(0.5)
