"""The loop's story: a scripted run of events folded in any reading order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import (
    DeadLetter,
    DriftAlert,
    FeatureDrift,
    ModelCandidate,
    Prediction,
    Promotion,
    SystemEvent,
    TrainingRequest,
    Window,
)
from schemas.usecase import load_usecase
from services.telemetry.story import SEEN_EVENTS, Story
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


def test_story_follows_the_loop_in_time_order_whatever_the_reading_order() -> None:
    events = story("credit")
    # Each topic is read in order, but the topics in parallel: a promotion may be read
    # before the alert that led to it.
    scrambled = [events[1], events[7], events[5], events[3], events[4], events[0], events[2]]
    scrambled += [events[6], events[8]]
    state = Story("credit", primary_metric="roc_auc")
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


def test_story_champion_and_challenger_switch_by_action() -> None:
    uc = "credit"
    state = Story(uc)
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


def test_story_ignores_other_usecases_and_repeats() -> None:
    state = Story("credit")
    other = promotion("phishing", "promote", "phishing", "1", 1, reason="x")
    assert not state.observe(other, at=0)
    first = alert("credit", 5)
    assert state.observe(first, at=0)
    assert not state.observe(first, at=0)  # at-least-once delivery: the same event again
    dead = DeadLetter(
        usecase="credit", service="ingestion", reason="age: 'n/a' is not a number",
        payload="{}", topic="credit.raw",
    )  # fmt: skip
    assert state.observe(dead, at=0) and not state.observe(dead, at=0)
    assert not state.observe_label(b"not json", at=0)
    assert state.champion is None and len(state.alerts) == 1
    assert (state.deadletters, state.unreadable) == (1, 1)


def test_story_remembers_the_newest_event_ids_only() -> None:
    state = Story("credit")
    letters = [
        DeadLetter(usecase="credit", service="ingestion", reason="bad", payload="{}",
                   topic="credit.raw", event_id=f"d{i}")
        for i in range(SEEN_EVENTS + 5)
    ]  # fmt: skip
    for letter in letters:
        assert state.observe(letter, at=0)
    assert len(state._seen) == SEEN_EVENTS  # a long run's dead letters: memory stays bounded
    assert not state.observe(letters[-1], at=0)  # a recent repeat is still ignored
    assert not state.observe(letters[5], at=0)  # the oldest remembered one, too
    assert state.observe(letters[0], at=0)  # one that old is counted again (approximate)
    assert state.deadletters == SEEN_EVENTS + 6


def test_live_metric_per_variant_joins_predictions_and_labels_in_any_order() -> None:
    spec = load_usecase(USECASES / "credit.yaml")
    state = Story.for_usecase(spec, live_window=4)
    state.observe(prediction("credit", "warm-up", 1), at=epoch(0))  # the champion answers first
    truths = {"e0": 1, "e1": 0, "e2": 1, "e3": 0, "e4": 1, "e5": 1}
    guesses = {"e0": 1, "e1": 0, "e2": 0, "e3": 0, "e4": 1, "e5": 1}
    for i, event_id in enumerate(truths):
        label = json.dumps({"event_id": event_id, "label": truths[event_id], "timestamp": "x"})
        served = prediction("credit", event_id, guesses[event_id])
        if i % 2:
            state.observe(served, at=epoch(i))
            state.observe_label(label.encode(), at=epoch(i))
        else:
            state.observe_label(label.encode(), at=epoch(i))
            state.observe(served, at=epoch(i))
    shadow = prediction("credit", "e9", 0, variant="shadow")
    state.observe(shadow, at=epoch(9))
    state.observe_label(b'{"event_id": "e9", "label": 1}', at=epoch(9))
    assert state.live["champion"].joined == 6 and state.labels == 7
    assert state.live["shadow"].joined == 1  # the shadow is measured on its own
    live = state.live_metrics("champion")
    assert live["accuracy"] == 0.75  # the last 4 pairs: e2 (wrong), e3, e4, e5
    assert "roc_auc" in live and state.metric == "roc_auc"
    assert state.live_metrics("shadow")["accuracy"] == 0.0
    assert state.live_metrics("challenger") == {}
    assert len(state.last_predictions) == 8
