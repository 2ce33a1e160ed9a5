"""The drift detector, a real process, SIGKILLed twice mid-stream and restarted.

Feature rows of the credit demo (drifting from row ``DRIFT_AT`` on) flow in
small batches; the detector checkpoints its windows every two seconds while
it commits offsets after every batch, so at a kill the committed offsets may
run ahead of what the windows hold. It is killed once before the drift and
once just after its first data alert, while the drift episode is open. After
the restarts its checkpoint must equal an uninterrupted in-memory run of the
same monitor over the same rows: every row counted once in the window
(nothing lost to the commits running ahead, nothing replayed twice), the same
window contents, the same check outcomes and alert gates. The alerts topic
holds exactly the uninterrupted run's alerts: a replayed alert may be
redelivered, but with the same id and the same content, never as a second
alert for the same window. The committed offsets end equal to the checkpoint's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import topics
from schemas.events import DriftAlert, FeatureRow
from schemas.usecase import UseCase
from services.common.serde import decode_object, encode
from services.drift_detector.checkpoint import load_checkpoint
from services.drift_detector.monitor import UseCaseMonitor
from tests.drift_detector.conftest import credit_spec, feature_rows
from tests.reliability import tally
from tests.stack import Stack, committed, publish_raw, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 3400
DRIFT_AT = 2000
# What an alert says; its report path and emission time are not compared.
ALERT_FIELDS = {"alert_id", "kind", "severity", "method", "features", "drift_share", "window"}


@pytest.fixture
def spec(unique: str) -> UseCase:
    return credit_spec(unique)


@pytest.fixture
def stack(bootstrap: str, spec: UseCase, tmp_path: Path):  # type: ignore[no-untyped-def]
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    (usecases / f"{spec.name}.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    running = Stack(bootstrap, tmp_path / "home", usecases, tmp_path)
    yield running
    running.stop_all()


def start(stack: Stack, usecase: str, checkpoint_seconds: float = 2.0) -> None:
    stack.start(
        "drift_detector",
        DRIFTLINE_GROUP_ID=usecase,
        DRIFTLINE_MAX_RECORDS="50",
        DRIFTLINE_POLL_TIMEOUT_MS="50",
        DRIFTLINE_CHECKPOINT_SECONDS=str(checkpoint_seconds),
    )


def checkpoint(stack: Stack, usecase: str) -> UseCaseMonitor | None:
    monitors = load_checkpoint(stack.home / "drift_detector" / "checkpoint.pkl") or {}
    monitor: UseCaseMonitor | None = monitors.get(usecase)
    return monitor


def rows_read(stack: Stack, usecase: str) -> int:
    """The next feature offset the checkpoint holds: the rows its windows account for."""
    monitor = checkpoint(stack, usecase)
    return monitor.offsets.get(f"{topics.features(usecase)}:0", 0) if monitor else 0


def alerted(stack: Stack, usecase: str) -> bool:
    monitor = checkpoint(stack, usecase)
    return monitor is not None and monitor.gates["data"].last_alert_at is not None


def kill(stack: Stack, usecase: str) -> tuple[int, int | None]:
    """SIGKILL; return the rows the checkpoint holds and the committed offset."""
    stack.kill("drift_detector")
    tally.add("faults_injected")
    return rows_read(stack, usecase), committed(stack.bootstrap, usecase, topics.features(usecase))


def uninterrupted(spec: UseCase, messages: list[bytes], reports: Path) -> UseCaseMonitor:
    """The same monitor over the same rows, in memory, never interrupted."""
    monitor = UseCaseMonitor(spec)

    async def run() -> None:
        for message in messages:
            await monitor.offer_features(FeatureRow.model_validate(decode_object(message)), reports)

    asyncio.run(run())
    return monitor


def published_alerts(bootstrap: str, usecase: str) -> list[DriftAlert]:
    return [
        DriftAlert.model_validate(alert)
        for alert in read_topic(bootstrap, topics.DRIFT_ALERTS)
        if alert.get("usecase") == usecase and alert.get("kind") != "concept"
    ]


def content(alert: DriftAlert) -> dict[str, Any]:
    return alert.model_dump(mode="json", include=ALERT_FIELDS)


def window_of(monitor: UseCaseMonitor) -> list[tuple[float, dict[str, Any]]]:
    return [(row.at, row.values) for row in monitor.data_window.rows()]


def test_sigkilled_detector_counts_every_row_once(
    stack: Stack, spec: UseCase, unique: str, tmp_path: Path
) -> None:
    messages = [encode(row) for row in feature_rows(spec, EVENTS, drift_at=DRIFT_AT)]
    total = len(messages)
    features_topic = topics.features(unique)

    start(stack, unique)
    publish_raw(stack.bootstrap, features_topic, messages)
    # Kill 1: at the first checkpoint, windows filling, before the drift.
    assert wait_until(lambda: rows_read(stack, unique) > 0, 300, 0.1), stack.tail("drift_detector")
    first_kill = kill(stack, unique)
    assert 0 < first_kill[0] < DRIFT_AT, f"the first kill did not land mid-stream: {first_kill}"

    # Kill 2: right after the first data alert, the drift episode open.
    start(stack, unique)
    assert wait_until(lambda: alerted(stack, unique), 300, 0.1), stack.tail("drift_detector")
    second_kill = kill(stack, unique)
    assert 0 < second_kill[0] < total, f"the second kill did not land mid-stream: {second_kill}"

    # The last run checkpoints every batch, so that the end is observable.
    start(stack, unique, checkpoint_seconds=0)
    assert wait_until(lambda: rows_read(stack, unique) == total, 300), stack.tail("drift_detector")
    stack.stop_all()

    monitor = checkpoint(stack, unique)
    assert monitor is not None
    expected = uninterrupted(spec, messages, tmp_path / "uninterrupted")
    counted = monitor.data_window.total
    tally.add("events_checked", total)
    tally.add("events_lost", max(0, expected.data_window.total - counted))
    tally.add("events_doubled", max(0, counted - expected.data_window.total))
    kills = f"kills at (checkpoint rows, committed offset): {first_kill}, {second_kill}"
    assert counted == expected.data_window.total == total - spec.drift.reference_rows, kills
    assert window_of(monitor) == window_of(expected)
    assert monitor.gates == expected.gates
    assert monitor.last_checks == expected.last_checks
    assert expected.gates["data"].episodes >= 1  # the drift was seen: alerts to account for

    # Each alert the uninterrupted run raises, once by id and identical on every copy.
    alerts = published_alerts(stack.bootstrap, unique)
    by_id: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        assert by_id.setdefault(alert.alert_id, content(alert)) == content(alert)
        assert Path(str(alert.report_path)).is_file()
    assert by_id == {alert.alert_id: content(alert) for alert in expected.alerts}, kills

    # The committed offset ends equal to the checkpoint's.
    assert (
        committed(stack.bootstrap, unique, features_topic)
        == monitor.offsets[f"{features_topic}:0"]
        == total
    )
    tally.add("faults_survived", 2)
