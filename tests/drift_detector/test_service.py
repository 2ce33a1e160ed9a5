"""The drift detector service against the real embedded broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from schemas import topics
from schemas.events import DriftAlert, ModelCandidate, Promotion
from schemas.usecase import UseCase
from services.common.bus import ensure_topics, start_consumer, start_producer
from services.common.serde import decode, encode
from services.drift_detector.monitor import BOOTSTRAP
from services.drift_detector.service import DriftDetector
from services.drift_detector.settings import DriftDetectorSettings
from tests.drift_detector.conftest import candidate, credit_spec, feature_rows

pytestmark = pytest.mark.integration


async def publish(bootstrap: str, topic: str, events: list[Any]) -> None:
    producer = await start_producer(bootstrap)
    try:
        for event in events:
            await producer.send(topic, encode(event))
        await producer.flush()
    finally:
        await producer.stop()


async def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


async def read_alerts(bootstrap: str, usecase: str) -> list[DriftAlert]:
    consumer = await start_consumer(bootstrap, [topics.DRIFT_ALERTS], None)
    try:
        await consumer.seek_to_beginning()
        events = []
        while batches := await consumer.getmany(timeout_ms=500):
            for records in batches.values():
                events.extend(decode(r.topic, r.value) for r in records)
        return [e for e in events if isinstance(e, DriftAlert) and e.usecase == usecase]
    finally:
        await consumer.stop()


class FrameSource:
    """A reference source that hands out the training rows the test chose, and counts calls."""

    def __init__(self, frames: dict[str, pd.DataFrame]) -> None:
        self.frames = frames
        self.calls: list[str] = []

    def __call__(self, spec: UseCase, champion: ModelCandidate) -> pd.DataFrame:
        self.calls.append(champion.model_version)
        return self.frames[champion.model_version]


def as_frame(spec: UseCase, rows: list[Any]) -> pd.DataFrame:
    return pd.DataFrame([row.features for row in rows])[spec.feature_names()]


def promotion(spec: UseCase, version: str, action: str = "promote") -> Promotion:
    return Promotion(
        usecase=spec.name,
        action=action,  # type: ignore[arg-type]
        model_name=spec.name,
        model_version=version,
        reason="test",
        artifact_sha256="0" * 64,
    )


async def test_drifted_features_raise_one_data_alert_on_the_champion_reference(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = credit_spec(unique)
    rows = feature_rows(spec, 3400, drift_at=1800)
    stationary, live = rows[:400], rows[400:]
    # Version 2 was trained on shifted data: while it is champion, the live rows look alike
    # until the shift, then drift; version 1's reference is the stationary rows.
    source = FrameSource({"1": as_frame(spec, stationary), "2": as_frame(spec, stationary)})
    await ensure_topics(
        bootstrap,
        [*topics.usecase_topics(unique), *topics.GLOBAL_TOPICS],
    )
    await publish(bootstrap, topics.MODELS_CANDIDATES, [candidate(spec, "1"), candidate(spec, "2")])
    await publish(
        bootstrap,
        topics.MODELS_PROMOTIONS,
        [promotion(spec, "1", "canary"), promotion(spec, "1")],
    )
    settings = DriftDetectorSettings(
        bootstrap=bootstrap, home=home, group_id=unique, poll_timeout_ms=50, max_records=200
    )
    detector = DriftDetector(settings, {unique: spec}, reference_source=source)
    monitor = detector.monitors[unique]
    stop = asyncio.Event()
    task = asyncio.create_task(detector.run(stop))
    try:
        # The champion found by replaying the lineage gives the reference, loaded once.
        await until(lambda: monitor.reference_id == f"{unique}:1")
        assert source.calls == ["1"]
        await publish(bootstrap, topics.features(unique), live)
        await until(lambda: monitor.data_window.total >= len(live))
        await until(lambda: detector.processor is not None and detector.processor.published >= 1)
        # A promotion arriving live switches the reference.
        await publish(bootstrap, topics.MODELS_PROMOTIONS, [promotion(spec, "2")])
        await until(lambda: monitor.reference_id == f"{unique}:2")
        assert source.calls == ["1", "2"]
        assert monitor.champion == (unique, "2")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
    alerts = await read_alerts(bootstrap, unique)
    data = [alert for alert in alerts if alert.kind == "data"]
    assert monitor.gates["data"].episodes == 1
    assert not monitor.gates["data"].drifting  # a new reference starts calm
    assert data, "no data alert"
    assert len({alert.alert_id for alert in data}) == len(data)
    first = data[0]
    assert first.champion_version == "1"
    assert first.details["reference"] == f"{unique}:1" != BOOTSTRAP
    assert first.features["salary_z"].drifted
    assert Path(str(first.report_path)).is_file()
    assert str(first.report_path).startswith(str(home.resolve()))
    assert len(data) <= 2  # one episode: the entry alert and at most one escalation

    # A restart resumes from the checkpoint: same windows, same reference, nothing replayed.
    again = DriftDetector(settings, {unique: spec}, reference_source=source)
    resumed = again.monitors[unique]
    assert resumed.data_window.total == len(live)
    assert resumed.reference_id == f"{unique}:2"
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(stop))
    try:
        await until(lambda: again.processor is not None)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert source.calls == ["1", "2"]
    assert resumed.data_window.total == len(live)
    assert len(await read_alerts(bootstrap, unique)) == len(alerts)


async def test_a_promotion_read_before_its_candidate_switches_once_the_candidate_comes(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = credit_spec(unique)
    source = FrameSource({"1": as_frame(spec, feature_rows(spec, 400))})
    await ensure_topics(bootstrap, [*topics.usecase_topics(unique), *topics.GLOBAL_TOPICS])
    settings = DriftDetectorSettings(
        bootstrap=bootstrap, home=home, group_id=unique, poll_timeout_ms=50, max_records=200
    )
    detector = DriftDetector(settings, {unique: spec}, reference_source=source)
    monitor = detector.monitors[unique]
    stop = asyncio.Event()
    task = asyncio.create_task(detector.run(stop))
    try:
        await until(lambda: detector.processor is not None)
        await publish(bootstrap, topics.MODELS_PROMOTIONS, [promotion(spec, "1")])
        await until(lambda: detector.lineage.champion(unique) == (unique, "1"))
        assert monitor.reference_id != f"{unique}:1"  # no candidate yet: the reference waits
        await publish(bootstrap, topics.MODELS_CANDIDATES, [candidate(spec, "1")])
        await until(lambda: monitor.reference_id == f"{unique}:1")
        assert source.calls == ["1"]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
