"""The live view: the state model on a scripted story, the renderer's text, and the real broker."""

from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from schemas import topics
from schemas.events import (
    DeadLetter,
    DriftAlert,
    FeatureDrift,
    FeatureRow,
    ModelCandidate,
    Prediction,
    Promotion,
    SystemEvent,
    TrainingRequest,
    Window,
)
from schemas.usecase import load_usecase
from services.cli.live import LiveThread, render, run_live
from services.cli.live_state import LiveState
from services.common.bus import ensure_topics, start_producer
from tests.conftest import USECASES

SHA = "ab" * 32
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def epoch(seconds: float) -> float:
    return at(seconds).timestamp()


def candidate(uc: str, version: str, trainer: str, when: float, **metrics: float) -> ModelCandidate:
    online = trainer == "online"
    return ModelCandidate(
        usecase=uc,
        occurred_at=at(when),
        model_name=f"{uc}-online" if online else uc,
        model_version=version,
        trainer=trainer,  # type: ignore[arg-type]
        flavor="river" if online else "torch",
        metrics=metrics,
        baseline_metrics=None if online else {"roc_auc": 0.61},
        data_window=Window(rows=1000),
        artifact_uri=f"mlflow://{uc}/{version}",
        artifact_sha256=SHA,
    )


def promotion(uc: str, action: str, name: str, version: str, when: float, **kw: Any) -> Promotion:
    return Promotion(
        usecase=uc,
        occurred_at=at(when),
        action=action,  # type: ignore[arg-type]
        model_name=name,
        model_version=version,
        artifact_uri=f"mlflow://{name}/{version}",
        artifact_sha256=SHA,
        **kw,
    )


def alert(
    uc: str, when: float, alert_id: str = "alert-1", severity: str = "critical"
) -> DriftAlert:
    return DriftAlert(
        usecase=uc,
        occurred_at=at(when),
        alert_id=alert_id,
        kind="data",
        severity=severity,  # type: ignore[arg-type]
        method="ks",
        features={
            "salary_z": FeatureDrift(score=0.0001, method="ks", threshold=0.05, drifted=True),
            "age_z": FeatureDrift(score=0.002, method="ks", threshold=0.05, drifted=True),
            "loan_z": FeatureDrift(score=0.4, method="ks", threshold=0.05, drifted=False),
        },
        drift_share=0.6,
        window=Window(rows=500),
    )


def prediction(uc: str, event_id: str, guess: int, variant: str = "champion") -> Prediction:
    p1 = 0.8 if guess == 1 else 0.3
    return Prediction(
        usecase=uc,
        source_event_id=event_id,
        entity_id="cust-1",
        model_name=uc,
        model_version="1",
        variant=variant,  # type: ignore[arg-type]
        prediction=guess,
        probabilities={"0": 1 - p1, "1": p1},
        latency_ms=1.5,
    )


def story(uc: str) -> list[SystemEvent]:
    """The loop's story, in the order it happens."""
    return [
        candidate(uc, "1", "online", 10, roc_auc=0.80, rolling_roc_auc=0.82),
        promotion(uc, "promote", f"{uc}-online", "1", 12, reason="first model", scores={}),
        candidate(uc, "2", "online", 40, roc_auc=0.79, rolling_roc_auc=0.64),
        alert(uc, 45),
        alert(uc, 50, alert_id="alert-2", severity="info"),
        TrainingRequest(usecase=uc, occurred_at=at(51), reason="drift", alert_id="alert-1"),
        candidate(uc, "1", "batch", 80, roc_auc=0.91),
        promotion(
            uc,
            "promote",
            uc,
            "1",
            90,
            previous_version="1",
            reason="candidate roc_auc 0.910 beats champion 0.640 by more than 0.005",
            scores={"candidate": 0.91, "champion": 0.64, "eval_rows": 500.0},
        ),
        candidate(uc, "3", "online", 120, roc_auc=0.80, rolling_roc_auc=0.88),
    ]


def test_state_counts_and_rates_from_record_times() -> None:
    state = LiveState("credit")
    for i in range(30):  # 10 events a second for 3 seconds
        state.observe_record("credit.raw", b'{"event_id": "x"}', epoch(i / 10))
    for i in range(20):
        state.observe_record("credit.features", b"{}", epoch(i / 10))
    dead = DeadLetter(
        usecase="credit", service="ingestion", reason="age: 'n/a' is not a number",
        payload="{}", topic="credit.raw",
    )  # fmt: skip
    state.observe_record("credit.deadletter", dead.model_dump_json().encode(), epoch(1))
    state.observe_record("credit.deadletter", b"not json", epoch(1))
    assert (state.raw.total, state.features.total, state.deadletters) == (30, 20, 1)
    assert state.unreadable == 1
    assert state.raw.rate(now=epoch(3)) == pytest.approx(30 / 5)
    assert state.raw.series(now=epoch(3), seconds=3) == [10, 10, 10]
    assert state.features.rate(now=epoch(60)) == 0.0
    assert state.last_deadletter is not None and "n/a" in state.last_deadletter.reason


def test_state_follows_the_story_in_time_order_whatever_the_reading_order() -> None:
    uc = "credit"
    events = story(uc)
    # Each topic is read in order, but the topics in parallel: a promotion may be read
    # before the alert that led to it.
    scrambled = [events[1], events[7], events[5], events[3], events[4], events[0], events[2]]
    scrambled += [events[6], events[8]]
    state = LiveState("credit", primary_metric="roc_auc")
    for event in scrambled:
        assert state.observe(event, at=event.occurred_at.timestamp())
    assert state.champion is not None and state.champion.label == "credit v1"
    assert state.champion.name == "credit"  # the batch model took over from credit-online v1
    kinds = [m.kind for m in state.milestones]
    assert kinds == ["online", "champion", "drift", "request", "candidate", "promotion"]
    drift = state.milestones[2]
    assert drift.count == 2 and "salary_z" in drift.text and "loan_z" not in drift.text
    assert drift.text.startswith("critical")  # the storm shows its most severe alert
    assert [v for _, v in state.online_history] == [0.82, 0.64, 0.88]
    assert state.online is not None and state.online.model_version == "3"
    assert state.elapsed(state.milestones[-1].at) == 80.0  # from the first event at +10 s
    assert state.alerts_by_kind["data"] == 2 and len(state.requests) == 1


def test_state_champion_and_challenger_switch_by_action() -> None:
    uc = "credit"
    state = LiveState(uc)
    state.observe(promotion(uc, "promote", uc, "1", 1, reason="first"), at=0)
    state.observe(promotion(uc, "canary", uc, "2", 2, traffic_share=0.2, reason="try"), at=0)
    assert state.challenger is not None and state.challenger.role == "canary"
    assert state.challenger.traffic_share == 0.2
    state.observe(promotion(uc, "reject", uc, "3", 3, reason="worse"), at=0)
    assert (state.champion.version, state.challenger.version) == ("1", "2")  # type: ignore[union-attr]
    state.observe(promotion(uc, "promote", uc, "2", 4, previous_version="1", reason="won"), at=0)
    assert state.champion.version == "2" and state.challenger is None  # type: ignore[union-attr]
    state.observe(promotion(uc, "shadow", uc, "4", 5, reason="watch"), at=0)
    assert state.challenger.role == "shadow"  # type: ignore[union-attr]
    state.observe(promotion(uc, "rollback", uc, "1", 6, previous_version="2", reason="bad"), at=0)
    assert state.champion.version == "1" and state.challenger is None  # type: ignore[union-attr]
    assert [m.kind for m in state.milestones] == ["champion"] + ["promotion"] * 5
    assert state.milestones[-1].text == "rollback credit v1 (was credit v2)"
    assert len(state.promotions) == 6


def test_state_ignores_other_usecases_and_repeats() -> None:
    state = LiveState("credit")
    other = promotion("phishing", "promote", "phishing", "1", 1, reason="x")
    assert not state.observe(other, at=0)
    first = alert("credit", 5)
    assert state.observe(first, at=0)
    assert not state.observe(first, at=0)  # at-least-once delivery: the same event again
    assert state.champion is None and len(state.alerts) == 1


def test_live_metric_joins_predictions_and_labels_in_any_order() -> None:
    spec = load_usecase(USECASES / "credit.yaml")
    state = LiveState.for_usecase(spec, live_window=4)
    truths = {"e0": 1, "e1": 0, "e2": 1, "e3": 0, "e4": 1, "e5": 1}
    guesses = {"e0": 1, "e1": 0, "e2": 0, "e3": 0, "e4": 1, "e5": 1}
    for i, event_id in enumerate(truths):
        label = json.dumps({"event_id": event_id, "label": truths[event_id], "timestamp": "x"})
        record = prediction("credit", event_id, guesses[event_id]).model_dump_json().encode()
        first, second = (("credit.labels", label.encode()), ("credit.predictions", record))[
            :: 1 if i % 2 else -1
        ]
        state.observe_record(*first, epoch(i))
        state.observe_record(*second, epoch(i))
    shadow = prediction("credit", "e9", 0, variant="shadow").model_dump_json().encode()
    state.observe_record("credit.predictions", shadow, epoch(9))
    state.observe_record("credit.labels", b'{"event_id": "e9", "label": 1}', epoch(9))
    assert state.live.joined == 6 and state.labels == 7  # the shadow answer is not served
    live = state.live_metrics()
    assert live["accuracy"] == 0.75  # the last 4 pairs: e2 (wrong), e3, e4, e5
    assert "roc_auc" in live and state.metric == "roc_auc"
    # One point per join (a window of 4 samples every join), but no ROC AUC with one class.
    assert len(state.live_history) == 5


def test_renderer_shows_champion_alert_and_promotion_reason() -> None:
    state = LiveState("credit", primary_metric="roc_auc")
    for event in story("credit"):
        state.observe(event, at=event.occurred_at.timestamp())
    for i in range(50):
        state.observe_record("credit.raw", b"{}", epoch(120 + i / 10))
    console = Console(record=True, width=110, file=io.StringIO())
    console.print(render(state, now=epoch(126)))
    text = console.export_text()
    assert "credit v1" in text  # the champion
    assert "critical data" in text and "salary_z" in text  # the alert
    assert "beats champion 0.640" in text  # the promotion reason
    assert "first champion credit-online v1" in text
    assert "rolling roc_auc 0.880" in text
    assert max(len(line) for line in text.splitlines()) <= 110


def test_renderer_handles_an_empty_state() -> None:
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(render(LiveState("credit"), now=0.0, footer=lambda: "services: 5 running"))
    text = console.export_text()
    assert "waiting for the first" in text and "no drift alerts yet" in text
    assert text.rstrip().endswith("services: 5 running")  # what ``up`` adds under the view


async def test_run_live_reads_every_topic_of_a_usecase_on_the_broker(
    bootstrap: str, unique: str
) -> None:
    state = LiveState(unique, primary_metric="roc_auc")
    await ensure_topics(bootstrap, state.topics())
    producer = await start_producer(bootstrap)
    try:
        for i in range(5):
            raw = {"event_id": f"e{i}", "entity_id": "c1", "timestamp": at(i).isoformat()}
            await producer.send_and_wait(topics.raw(unique), json.dumps(raw).encode())
            row = FeatureRow(usecase=unique, source_event_id=f"e{i}", entity_id="c1",
                             event_timestamp=at(i), features={"x": float(i)})  # fmt: skip
            await producer.send_and_wait(topics.features(unique), row.model_dump_json().encode())
            await producer.send_and_wait(
                topics.predictions(unique),
                prediction(unique, f"e{i}", 1).model_dump_json().encode(),
            )
            label = {
                "event_id": f"e{i}",
                "label": 1 if i < 4 else 0,
                "timestamp": at(i).isoformat(),
            }
            await producer.send_and_wait(topics.labels(unique), json.dumps(label).encode())
        dead = DeadLetter(usecase=unique, service="ingestion", reason="bad", payload="{", topic="r")
        await producer.send_and_wait(topics.deadletter(unique), dead.model_dump_json().encode())
        for event in story(unique):
            topic = {
                "model_candidate": topics.MODELS_CANDIDATES,
                "promotion": topics.MODELS_PROMOTIONS,
                "drift_alert": topics.DRIFT_ALERTS,
                "training_request": topics.TRAINING_REQUESTS,
            }[event.event_type]
            await producer.send_and_wait(topic, event.model_dump_json().encode())
        # Another use case on the shared global topics must not count.
        stranger = promotion(unique + "x", "promote", "other", "9", 1, reason="not ours")
        await producer.send_and_wait(topics.MODELS_PROMOTIONS, stranger.model_dump_json().encode())
    finally:
        await producer.stop()

    stop = asyncio.Event()
    console = Console(record=True, width=110, file=io.StringIO())

    async def stop_when_read() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            state.live.joined == 5 and len(state.promotions) == 2 and state.deadletters == 1
        ):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a few more redraws
        stop.set()

    watcher = asyncio.create_task(stop_when_read())
    result = await run_live(bootstrap, unique, stop, console, state=state)
    await watcher
    assert result is state
    assert (state.raw.total, state.features.total, state.predictions.total) == (5, 5, 5)
    assert (state.labels, state.deadletters, state.live.joined) == (5, 1, 5)
    assert state.live_metrics()["accuracy"] == 0.8
    assert state.champion is not None and state.champion.label == f"{unique} v1"
    assert [p.model_name for p in state.promotions] == [f"{unique}-online", unique]
    assert [m.kind for m in state.milestones] == [
        "online", "champion", "drift", "request", "candidate", "promotion",
    ]  # fmt: skip
    assert "beats champion 0.640" in console.export_text()


def test_live_thread_starts_and_stops(bootstrap: str, unique: str) -> None:
    view = LiveThread(bootstrap, unique, console=Console(file=io.StringIO(), width=110)).start()
    time.sleep(0.5)
    state = view.stop()
    assert view.error is None and state.usecase == unique and state.raw.total == 0


def test_live_verb_runs_for_the_seconds_asked(bootstrap: str, unique: str) -> None:
    import typer
    from typer.testing import CliRunner

    from services.cli.live import register

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so that the verb keeps its name
    register(app)
    asyncio.run(ensure_topics(bootstrap, [topics.raw(unique)]))

    async def publish() -> None:
        producer = await start_producer(bootstrap)
        try:
            for i in range(3):
                await producer.send_and_wait(topics.raw(unique), b'{"event_id": "%d"}' % i)
        finally:
            await producer.stop()

    asyncio.run(publish())
    env = {"DRIFTLINE_BOOTSTRAP": bootstrap, "DRIFTLINE_USECASES_DIR": str(USECASES)}
    result = CliRunner().invoke(app, ["live", unique, "--seconds", "1.5"], env=env)
    assert result.exit_code == 0, result.output
    assert f"driftline live   {unique}" in result.output
    assert "3 total" in result.output
