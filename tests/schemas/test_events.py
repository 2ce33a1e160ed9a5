"""One contract test that runs every system event through the same checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import events, topics
from schemas.events import EVENT_TYPES, SystemEvent
from schemas.export import export_json_schemas

WINDOW = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "rows": 10}
SHA = "a" * 64

EXAMPLES: dict[type[SystemEvent], dict[str, Any]] = {
    events.FeatureRow: {
        "source_event_id": "e1",
        "entity_id": "c1",
        "event_timestamp": "2026-01-01T00:00:00Z",
        "features": {"age": 41.0, "salary_z": -0.3},
    },
    events.DeadLetter: {
        "service": "ingestion",
        "reason": "field 'age': expected a number, got 'old'",
        "payload": '{"age": "old"}',
        "topic": "credit.raw",
        "partition": 0,
        "offset": 12,
    },
    events.Prediction: {
        "entity_id": "c1",
        "model_name": "credit-batch",
        "model_version": "3",
        "variant": "champion",
        "prediction": 1,
        "probabilities": {"0": 0.2, "1": 0.8},
        "latency_ms": 1.5,
    },
    events.ModelCandidate: {
        "model_name": "credit-batch",
        "model_version": "3",
        "trainer": "batch",
        "flavor": "torch",
        "metrics": {"roc_auc": 0.91},
        "baseline_metrics": {"roc_auc": 0.85},
        "data_window": WINDOW,
        "artifact_uri": "file:///tmp/model",
        "artifact_sha256": SHA,
    },
    events.Promotion: {
        "action": "promote",
        "model_name": "credit-batch",
        "model_version": "3",
        "previous_version": "2",
        "artifact_sha256": SHA,
        "scores": {"candidate": 0.91, "champion": 0.88},
        "reason": "candidate beats champion by 0.03 roc_auc",
    },
    events.DriftAlert: {
        "kind": "data",
        "severity": "warning",
        "method": "ks",
        "features": {
            "salary": {"score": 0.001, "method": "ks", "threshold": 0.05, "drifted": True}
        },
        "drift_share": 0.5,
        "window": WINDOW,
    },
    events.TrainingRequest: {"reason": "drift", "alert_id": "a1", "window": WINDOW},
    events.LabelRequest: {
        "source_event_id": "e1",
        "entity_id": "c1",
        "prediction_id": "p1",
        "model_name": "credit-online",
        "model_version": "2",
        "variant": "champion",
        "prediction": 1,
        "probabilities": {"0": 0.45, "1": 0.55},
        "predicted_at": "2026-01-01T00:00:00Z",
        "strategy": "margin",
        "uncertainty": 0.9,
        "rank": 1,
        "candidates": 40,
        "budget_per_hour": 200,
        "reason": "margin 0.900: the most uncertain of 40 served predictions",
    },
}


def make(event_class: type[SystemEvent]) -> SystemEvent:
    return event_class.model_validate({"usecase": "credit", **EXAMPLES[event_class]})


def test_every_event_type_has_an_example() -> None:
    assert set(EXAMPLES) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_class", EVENT_TYPES, ids=lambda c: c.__name__)
class TestEventContract:
    def test_round_trips_through_json(self, event_class: type[SystemEvent]) -> None:
        event = make(event_class)
        again = event_class.model_validate_json(event.model_dump_json())
        assert type(again) is event_class
        assert again == event

    def test_envelope_is_filled(self, event_class: type[SystemEvent]) -> None:
        event = make(event_class)
        assert len(event.event_id) == 32
        assert event.occurred_at.tzinfo is not None
        assert event.schema_version == 1
        assert event.usecase == "credit"

    def test_unknown_fields_are_refused(self, event_class: type[SystemEvent]) -> None:
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            event_class.model_validate({"usecase": "credit", **EXAMPLES[event_class], "oops": 1})

    def test_another_version_is_refused(self, event_class: type[SystemEvent]) -> None:
        with pytest.raises(ValidationError):
            event_class.model_validate(
                {"usecase": "credit", **EXAMPLES[event_class], "schema_version": 2}
            )

    def test_ids_are_unique(self, event_class: type[SystemEvent]) -> None:
        assert make(event_class).event_id != make(event_class).event_id


def test_a_nan_never_reaches_a_feature_row() -> None:
    example = {**EXAMPLES[events.FeatureRow], "features": {"age": float("nan")}}
    with pytest.raises(ValidationError, match="finite"):
        events.FeatureRow.model_validate({"usecase": "credit", **example})


def test_export_writes_a_valid_json_schema_per_event(tmp_path: Path) -> None:
    written = export_json_schemas(tmp_path)
    names = {p.name for p in written}
    assert "feature_row.v1.json" in names and "usecase.json" in names
    assert "backtest.v1.json" in names  # an event of schemas/backtests.py
    assert len(written) == len(EVENT_TYPES) + 2
    schema = json.loads((tmp_path / "drift_alert.v1.json").read_text())
    assert schema["additionalProperties"] is False
    assert {"alert_id", "kind", "severity", "features", "window"} <= set(schema["properties"])


def test_topic_names_follow_the_contract() -> None:
    assert topics.usecase_topics("credit") == [
        "credit.raw",
        "credit.labels",
        "credit.features",
        "credit.deadletter",
        "credit.predictions",
        "credit.label_requests",
    ]
    assert set(topics.GLOBAL_TOPICS) == {
        "models.candidates",
        "models.promotions",
        "drift.alerts",
        "training.requests",
    }
    assert topics.usecase_of("models.candidates") is None
    assert len(topics.all_topics(["a", "b"])) == 20  # and the log epoch
    assert topics.LOG_EPOCH in topics.all_topics([])
