"""One decoder for every declared topic, one error format, and the services use it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from schemas import topics
from schemas.backtests import Backtest
from schemas.events import (
    DeadLetter,
    DriftAlert,
    FeatureRow,
    LabelRequest,
    ModelCandidate,
    Prediction,
    Promotion,
    SystemEvent,
    TrainingRequest,
    Window,
)
from schemas.inputs import Label
from schemas.topics import Topic
from services.common.deadletter import build_dead_letter
from services.common.errors import InvalidInput
from services.common.serde import decode, encode
from tests.online_trainer.conftest import agrawal_spec
from tests.records import consumer_record

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
EVENT_ID = "ev-1"
COMMON: dict[str, Any] = {"event_id": EVENT_ID, "usecase": "credit"}
SAMPLES: dict[Topic[Any], BaseModel] = {
    topics.LABELS: Label(event_id=EVENT_ID, label=1, timestamp=WHEN),
    topics.FEATURES: FeatureRow(
        **COMMON, source_event_id="raw-1", entity_id="c7", event_timestamp=WHEN,
        features={"age": 41.0, "car": 3},
    ),
    topics.DEADLETTER: DeadLetter(
        **COMMON, service="ingestion", reason="field 'age': too old", payload="{}",
        topic="credit.raw",
    ),
    topics.PREDICTIONS: Prediction(
        **COMMON, entity_id="c7", model_name="credit", model_version="3", variant="champion",
        prediction=1, probabilities={"0": 0.2, "1": 0.8}, latency_ms=1.5,
    ),
    topics.CANDIDATES: ModelCandidate(
        **COMMON, model_name="credit-online", model_version="2", trainer="online",
        flavor="river", metrics={"roc_auc": 0.8}, data_window=Window(rows=100),
        artifact_uri="models:/credit-online/2", artifact_sha256="a" * 64,
    ),
    topics.PROMOTIONS: Promotion(
        **COMMON, action="promote", model_name="credit", model_version="2", reason="first"
    ),
    topics.ALERTS: DriftAlert(
        **COMMON, kind="data", severity="warning", method="ks", window=Window(rows=500)
    ),
    topics.REQUESTS: TrainingRequest(**COMMON, reason="manual"),
    topics.LABEL_REQUESTS: LabelRequest(
        **COMMON, source_event_id="raw-1", entity_id="c7", prediction_id="p1",
        model_name="credit", model_version="3", variant="champion", prediction=1,
        predicted_at=WHEN, strategy="margin", uncertainty=0.9, rank=1, candidates=40,
        budget_per_hour=200, reason="margin 0.900: the most uncertain of 40",
    ),
    topics.BACKTESTS: Backtest(
        **COMMON, backtest_id="b1", requested_by="cli", model_name="credit", model_version="3",
        against_name="credit", against_version="2", against_role="champion", metric="roc_auc",
        winner="model", requested=Window(), covered=Window(rows=10), rows=10, rows_scored=10,
    ),
}  # fmt: skip
DECLARED = [*topics.USECASE_TOPICS, *topics.GLOBAL]


def test_every_topic_with_events_has_a_sample_and_the_rest_are_read_by_their_owner() -> None:
    assert set(SAMPLES) == {topic for topic in DECLARED if topic.model is not None}
    assert {str(topic) for topic in DECLARED if topic.model is None} == {
        "<uc>.raw", "<uc>.stats", "driftline.epoch",
    }  # fmt: skip
    with pytest.raises(TypeError, match="its own reader parses it"):
        decode(topics.RAW, b"{}")


@pytest.mark.parametrize("topic", list(SAMPLES), ids=str)
def test_every_topic_decodes_its_model_by_object_and_by_name(topic: Topic[Any]) -> None:
    event = SAMPLES[topic]
    value = encode(event)
    assert decode(topic, value) == event
    decoded = decode(topic.name("credit") if topic.per_usecase else topic.name(), value)
    assert type(decoded) is topic.model and decoded == event


def _required_field(model: type[BaseModel]) -> str:
    """The first required field the model adds to the envelope every system event shares."""
    envelope = set(SystemEvent.model_fields)
    return next(
        name for name, field in model.model_fields.items()
        if field.is_required() and name not in envelope
    )  # fmt: skip


@pytest.mark.parametrize("topic", list(SAMPLES), ids=str)
def test_a_malformed_record_names_the_field_and_the_event_id(topic: Topic[Any]) -> None:
    assert topic.model is not None
    field = _required_field(topic.model)
    document = json.loads(encode(SAMPLES[topic]))
    del document[field]
    with pytest.raises(InvalidInput) as caught:
        decode(topic, json.dumps(document).encode())
    expected = f"field '{field}': Field required (event_id 'ev-1')"
    assert caught.value.reason == f"not {topic.what}: {expected}"
    assert caught.value.event_id == EVENT_ID


SYSTEM_EVENTS = [topic for topic in SAMPLES if topic is not topics.LABELS]


@pytest.mark.parametrize("topic", SYSTEM_EVENTS, ids=str)
def test_a_system_event_with_an_unknown_field_is_refused_by_name(topic: Topic[Any]) -> None:
    document = json.loads(encode(SAMPLES[topic]))
    document["surprise"] = 1
    with pytest.raises(InvalidInput) as caught:
        decode(topic, json.dumps(document).encode())
    expected = "field 'surprise': Extra inputs are not permitted (event_id 'ev-1')"
    assert caught.value.reason == f"not {topic.what}: {expected}"


def test_a_label_with_an_extra_field_is_kept_and_a_bad_timestamp_is_named() -> None:
    value = {"event_id": "e9", "label": "yes", "timestamp": "2026-01-01T00:00:00Z", "by": "x"}
    label = decode(topics.LABELS, json.dumps(value))
    assert (label.event_id, label.label) == ("e9", "yes")
    with pytest.raises(InvalidInput) as caught:
        decode(topics.LABELS, b'{"event_id": "e9", "label": 1, "timestamp": "soon"}')
    reason = caught.value.reason
    assert reason.startswith("not a label: field 'timestamp': Input should be a valid datetime")
    assert reason.endswith("(event_id 'e9')")


def test_features_name_the_bad_feature() -> None:
    document = json.loads(encode(SAMPLES[topics.FEATURES]))
    document["features"]["age"] = float("inf")
    value = json.dumps(document).encode()  # Infinity: valid for json.loads, refused by the model
    with pytest.raises(InvalidInput) as caught:
        decode(topics.FEATURES, value)
    assert "field 'features.age." in caught.value.reason
    assert caught.value.event_id == EVENT_ID


def test_an_event_of_another_topic_is_refused_by_its_type() -> None:
    promotion = encode(SAMPLES[topics.PROMOTIONS])
    with pytest.raises(InvalidInput) as caught:
        decode(topics.CANDIDATES, promotion)
    assert caught.value.reason.startswith(
        "not a model candidate: field 'event_type': Input should be 'model_candidate'"
    )
    assert caught.value.event_id == EVENT_ID


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "empty message (no value)"),
        (b"{nope", "not valid JSON: "),
        (b"[1, 2]", "expected a JSON object, got a list"),
        (b'"text"', "expected a JSON object, got a string"),
        (b'{"event_id": 7}', "Input should be a valid string"),
    ],
)
def test_a_record_that_is_no_object_has_no_event_id(
    value: bytes | str | None, problem: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode(topics.REQUESTS, value)
    reason = caught.value.reason
    assert reason.startswith("not a training request: field '")
    assert problem in reason and reason.endswith("(event_id unknown)")
    assert caught.value.event_id is None


def test_a_topic_driftline_does_not_declare_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"'credit\.nope' is not a driftline topic"):
        decode("credit.nope", b"{}")


# ---- the services parse with it: their dead letters carry its reason ------------------


def _online_trainer(tmp_path: Path) -> Any:
    from services.online_trainer.service import UseCaseTrainer

    trainer = UseCaseTrainer(agrawal_spec("credit"), tmp_path / "credit.ckpt")
    return lambda record: trainer.handle(record)


def _drift_detector(tmp_path: Path) -> Any:
    from services.drift_detector.service import DriftDetector, DriftDetectorProcessor
    from services.drift_detector.settings import DriftDetectorSettings

    settings = DriftDetectorSettings(home=tmp_path)
    detector = DriftDetector(settings, {"credit": agrawal_spec("credit")})
    return DriftDetectorProcessor(detector, producer=None).process  # type: ignore[arg-type]


def _features(tmp_path: Path) -> Any:
    from services.features.sink import FeatureSink

    spec = agrawal_spec("credit")
    return FeatureSink(None, {"credit": spec}, None, tmp_path).process  # type: ignore[arg-type]


def _registry(tmp_path: Path) -> Any:
    from services.registry.promoter import Registry
    from services.registry.settings import RegistrySettings

    registry = Registry(RegistrySettings(home=tmp_path), {}, None, None)  # type: ignore[arg-type]
    return registry.process


def _batch_trainer(tmp_path: Path) -> Any:
    from services.batch_trainer.service import TrainingRequestHandler
    from services.batch_trainer.settings import BatchTrainerSettings

    settings = BatchTrainerSettings(home=tmp_path)
    return TrainingRequestHandler(settings, {}, None, None).process  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("service", "make", "topic"),
    [
        ("online_trainer", _online_trainer, topics.LABELS),
        ("online_trainer", _online_trainer, topics.FEATURES),
        ("drift_detector", _drift_detector, topics.PREDICTIONS),
        ("drift_detector", _drift_detector, topics.FEATURES),
        ("features", _features, topics.LABELS),
        ("registry", _registry, topics.CANDIDATES),
        ("registry", _registry, topics.ALERTS),
        ("batch_trainer", _batch_trainer, topics.REQUESTS),
    ],
)
async def test_a_service_dead_letters_a_malformed_record_with_the_decoders_reason(
    service: str, make: Any, topic: Topic[Any], tmp_path: Path
) -> None:
    process = make(tmp_path)
    assert topic.model is not None
    field = _required_field(topic.model)
    document = json.loads(encode(SAMPLES[topic]))
    del document[field]
    name = topic.name("credit") if topic.per_usecase else topic.name()
    record = consumer_record(name, 5, json.dumps(document).encode())
    with pytest.raises(InvalidInput) as caught:
        result = process(record)
        if result is not None:
            await result
    letter = build_dead_letter(service, caught.value, record)
    expected = f"field '{field}': Field required (event_id 'ev-1')"
    assert letter.reason == f"not {topic.what}: {expected}"
    assert (letter.source_event_id, letter.topic, letter.offset) == (EVENT_ID, name, 5)
    assert letter.usecase == "credit"
