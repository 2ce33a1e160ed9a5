"""One class rule: every service that maps a label reads it as ``UseCase.class_of`` does.

Each consumer is called through its own entry point (the batch trainer's
``prepare``, the registry's ``score``, the drift detector's ``labeled_pairs``,
the online trainer's ``normalize_label``, the inference service's
``check_feedback``, the live view's ``LiveMetric`` and the features sink's
``process``), never through a copy of its matching.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import topics
from schemas.events import Prediction, Window
from schemas.inputs import Label
from schemas.usecase import UseCase, load_usecase
from services.batch_trainer.data import LABEL, TIMESTAMP, prepare
from services.common.errors import InvalidInput
from services.drift_detector.checks import labeled_pairs
from services.features.sink import FeatureSink
from services.inference.errors import InvalidFeatures
from services.inference.service import check_feedback, json_key
from services.online_trainer.learner import normalize_label
from services.registry.scoring import score
from services.telemetry.joined import LiveMetric
from tests.records import consumer_record

USECASES = Path(__file__).resolve().parents[2] / "usecases"


def toy(task: str, classes: list[Any] | None = None) -> UseCase:
    label = {"classes": classes} if classes is not None else {}
    return UseCase.model_validate(
        {
            "name": "toy",
            "task": task,
            "label": label,
            "fields": {"x": {"type": "float"}},
            "features": [{"kind": "passthrough", "field": "x"}],
        }
    )


SPECS = {
    "credit": load_usecase(USECASES / "credit.yaml"),  # classes [0, 1]
    "phishing": load_usecase(USECASES / "phishing.yaml"),  # classes [false, true]
    "friedman": load_usecase(USECASES / "friedman.yaml"),  # regression
    "words": toy("classification", ["no", "yes", "Maybe"]),
    "halves": toy("classification", [0.5, 1.5, 2]),
}

SPELLINGS = [
    *(0, 1, 2, -1, 0.0, 1.0, 0.5, 1.5, 2.0, -0.0, 1e16, 2.5),
    *("0", "1", "1.0", " 1 ", "01", "1e0", "0.50", "1.5", "2", "2.5", "-0"),
    *(True, False, "true", "True", "FALSE", " false "),
    *("no", "No", " YES", "yes ", "maybe", "MAYBE", "Maybe", "y", "n", "x", ""),
    *(float("nan"), float("inf"), -math.inf, "nan", "NaN", "inf", "-Infinity", "1e400"),
]
labels = st.one_of(
    st.sampled_from(SPELLINGS),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=6),
    st.sampled_from(SPELLINGS).map(lambda v: str(v).upper()),
)
specs = st.sampled_from(sorted(SPECS))


# ---- every consumer's own way in -------------------------------------------------------


def batch_trainer(spec: UseCase, label: Any) -> Any:
    """What the batch trainer trains on for this label (None: the row is dropped)."""
    frame = pd.DataFrame(
        {
            **{name: [0.0] for name in spec.feature_names()},
            LABEL: pd.Series([label], dtype=object),
            TIMESTAMP: ["2026-01-01T00:00:00Z"],
        }
    )
    data = prepare(spec, frame, Window())
    if not data.profile.rows:
        return None
    if data.classes is None:
        return float(data.target[0])
    return data.classes[int(data.target[0])]


def registry_agrees(spec: UseCase, label: Any, expected: Any) -> bool:
    """The registry scores ``label`` as ``expected``: a perfect score against it, none else."""
    if spec.task == "regression":
        scored = score(spec, [label], [expected if expected is not None else 0.0])
        return scored == {} if expected is None else scored["mae"] == 0.0
    for cls in spec.label.classes or []:
        scored = score(spec, [label], [cls])
        if expected is None and scored != {}:
            return False
        if expected is not None and scored["accuracy"] != (1.0 if cls == expected else 0.0):
            return False
    return True


def drift_detector(spec: UseCase, label: Any) -> Any:
    truths, predictions, _ = labeled_pairs(spec, [label], [label], [None])
    assert truths == predictions
    return truths[0] if truths else None


def online_trainer(spec: UseCase, label: Any) -> Any:
    try:
        return normalize_label(spec, label)
    except InvalidInput:
        return None


def inference_accepts(spec: UseCase, label: Any) -> bool:
    feedback = Label(event_id="e1", label=label, timestamp="2026-01-01T00:00:00Z")
    try:
        check_feedback(spec, [feedback])
    except InvalidFeatures:
        return False
    return True


def live_view_agrees(spec: UseCase, label: Any, expected: Any) -> bool:
    """The live metric joins ``label`` with a served ``expected`` as a hit, and nothing else."""
    answers = [expected] if spec.task == "regression" else list(spec.label.classes or [])
    for served in [a for a in answers if a is not None] or [0.0]:
        live = LiveMetric(window=4, spec=spec)
        live.add_label("e1", label)
        live.add_prediction(
            Prediction(
                usecase=spec.name,
                source_event_id="e1",
                entity_id="c1",
                model_name=spec.name,
                model_version="1",
                variant="champion",
                prediction=served,
                latency_ms=1.0,
            )
        )
        metrics = live.metrics(spec.task)
        if expected is None:
            if metrics != {}:
                return False
        elif spec.task == "regression":
            if metrics["mae"] != 0.0:
                return False
        elif metrics["accuracy"] != (1.0 if served == expected else 0.0):
            return False
    return True


def sink_accepts(spec: UseCase, label: Any) -> bool:
    sink = FeatureSink(None, {spec.name: spec}, None, None)  # type: ignore[arg-type]
    message = {"event_id": "e1", "label": label, "timestamp": "2026-01-01T00:00:00Z"}
    record = consumer_record(topics.labels(spec.name), 0, json.dumps(message).encode())
    try:
        asyncio.run(sink.process(record))
    except InvalidInput:
        return False
    return True


# ---- the properties --------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(name=specs, label=labels)
def test_every_consumer_reads_a_label_as_the_spec_does(name: str, label: Any) -> None:
    spec = SPECS[name]
    expected = spec.class_of(label)
    if spec.task == "classification":
        assert expected is None or any(expected is c for c in spec.label.classes or []), (
            "class_of answers a declared class object"
        )
    assert batch_trainer(spec, label) == expected
    assert registry_agrees(spec, label, expected)
    assert drift_detector(spec, label) == expected
    assert online_trainer(spec, label) == expected
    assert inference_accepts(spec, label) == (expected is not None)
    assert live_view_agrees(spec, label, expected)
    assert sink_accepts(spec, label) == (expected is not None)


@settings(max_examples=300, deadline=None)
@given(name=specs, label=labels)
def test_the_offline_stores_text_reads_back_as_the_same_class(name: str, label: Any) -> None:
    # Labels are kept as text in the offline store (str(label)); training reads that text.
    spec = SPECS[name]
    assert spec.class_of(str(label)) == spec.class_of(label)


@given(name=specs)
def test_each_class_and_its_json_key_denote_that_class(name: str) -> None:
    spec = SPECS[name]
    for cls in spec.label.classes or []:
        assert spec.class_of(cls) is cls
        assert spec.class_of(json_key(cls)) is cls  # inference's probability keys
        assert spec.class_of(str(cls).upper()) is cls


@pytest.mark.parametrize(
    ("name", "label", "expected"),
    [
        ("credit", 1, 1),
        ("credit", 1.0, 1),
        ("credit", "1", 1),
        ("credit", "1.0", 1),
        ("credit", True, 1),
        ("credit", "true", 1),
        ("credit", False, 0),
        ("credit", 0.5, None),
        ("credit", "yes", None),
        ("phishing", 1, True),
        ("phishing", "1.0", True),
        ("phishing", "True", True),
        ("phishing", "false", False),
        ("phishing", 0, False),
        ("words", "Yes", "yes"),
        ("words", " maybe ", "Maybe"),
        ("words", True, None),
        ("halves", "0.50", 0.5),
        ("halves", 2.0, 2),
        ("friedman", "2.5", 2.5),
        ("friedman", 3, 3.0),
        ("friedman", True, None),
        ("friedman", "nan", None),
        ("friedman", math.inf, None),
    ],
)
def test_the_spellings(name: str, label: Any, expected: Any) -> None:
    got = SPECS[name].class_of(label)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("classes", "problem"),
    [([1, "1"], "one class"), (["Yes", "yes"], "one class"), ([0, 1, True], "one class")],
)
def test_classes_no_label_could_tell_apart_are_refused(classes: list[Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        toy("classification", classes)


def test_the_rule_follows_a_copy_with_other_classes() -> None:
    spec = SPECS["credit"]
    assert spec.class_of("b") is None
    other = spec.model_copy(update={"label": spec.label.model_copy(update={"classes": ["a", "b"]})})
    assert other.class_of(" B") == "b" and spec.class_of("b") is None
    again = load_usecase(USECASES / "credit.yaml")  # its own cached rule: not part of the spec
    assert spec == again and spec.spec_hash() == again.spec_hash()
