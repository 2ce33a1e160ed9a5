"""The broker absent at start-up: services wait with backoff and recover when it appears.

Ingestion and the features service start against a loopback port where
nothing listens. They must stay alive, say in their logs that they are
retrying, and (features) answer ``/readyz`` 503. Then an embedded broker
starts on that port: both become ready and carry raw events into Feast,
every event once.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from schemas import topics
from schemas.usecase import load_usecase
from services.common import dataset, featurestore
from services.common.broker import EmbeddedBroker, free_port
from tests.integration.test_ingest_path import valid_events
from tests.reliability import tally
from tests.stack import ROOT, Stack, publish_raw, usecase_copy, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def status(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_ingestion_and_features_wait_for_a_late_broker(unique: str, tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    usecases = tmp_path / "usecases"
    usecase_copy(ROOT / "usecases" / "credit.yaml", usecases, unique)
    stack = Stack(bootstrap, tmp_path / "home", usecases, tmp_path)
    health = {"ingestion": free_port(), "features": free_port()}
    broker = EmbeddedBroker(bootstrap, log_path=tmp_path / "tansu.log")
    try:
        for service, port in health.items():
            stack.start(service, DRIFTLINE_HEALTH_PORT=str(port))
            tally.add("faults_injected")
        for service in health:
            assert wait_until(lambda s=service: "broker not ready" in stack.log(s), timeout=60), (
                stack.log(service)[-2000:]
            )
        assert wait_until(lambda: status(health["features"]) == 503, timeout=30)
        for service, process in stack.processes.items():
            assert process.poll() is None, stack.log(service)[-2000:]

        broker.start()
        for service, port in health.items():
            assert wait_until(lambda p=port: status(p) == 200, timeout=120), stack.log(service)[
                -3000:
            ]
        spec = load_usecase(usecases / f"{unique}.yaml")
        events = valid_events(spec, 200)
        publish_raw(bootstrap, topics.raw(unique), [json.dumps(e).encode() for e in events])
        features_dir = featurestore.features_dir(stack.home, unique)

        def stored() -> int:
            return len(dataset.read_dataset(features_dir))

        assert wait_until(lambda: stored() >= len(events), timeout=120), (
            stack.log("ingestion")[-3000:] + stack.log("features")[-3000:]
        )
        offline = dataset.read_dataset(features_dir)
        assert sorted(offline[featurestore.EVENT_ID]) == sorted(e["event_id"] for e in events)
        tally.add("faults_survived", len(health))
        tally.add("events_checked", len(events))
    finally:
        stack.stop_all()
        broker.stop()


SWEEP = {
    # service: the environment that names its readiness port
    "online_trainer": "DRIFTLINE_HEALTH_PORT",
    "drift_detector": "DRIFTLINE_HEALTH_PORT",
    "registry": "DRIFTLINE_HEALTH_PORT",
    "batch_trainer": "DRIFTLINE_HEALTH_PORT",
    "inference": "DRIFTLINE_PORT",
    "telemetry": "DRIFTLINE_HEALTH_PORT",
}


@pytest.mark.reliability
@pytest.mark.parametrize("service", sorted(SWEEP))
def test_every_service_waits_for_a_late_broker(service: str, unique: str, tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    usecases = tmp_path / "usecases"
    usecase_copy(ROOT / "usecases" / "credit.yaml", usecases, unique)
    stack = Stack(bootstrap, tmp_path / "home", usecases, tmp_path)
    port = free_port()
    broker = EmbeddedBroker(bootstrap, log_path=tmp_path / "tansu.log")
    try:
        process = stack.start(service, **{SWEEP[service]: str(port)})
        tally.add("faults_injected")
        assert wait_until(lambda: "broker not ready" in stack.log(service), timeout=90), stack.log(
            service
        )[-2000:]
        assert process.poll() is None, stack.log(service)[-2000:]
        assert status(port) != 200
        broker.start()
        assert wait_until(lambda: status(port) == 200, timeout=180), stack.log(service)[-3000:]
        assert process.poll() is None
        tally.add("faults_survived")
    finally:
        stack.stop_all()
        broker.stop()
