"""Predict first, learn second: the per-row code path of the online trainer.

:class:`OnlineLearner` is everything the service does with one joined row,
and nothing it does with the broker; :func:`learn_stream` runs the same code
over in-memory rows so that the benchmark suite (B2 throughput, B3
prequential fidelity) measures exactly what the service runs.

>>> from schemas.usecase import UseCase
>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "classification", "label": {"classes": [0, 1]},
...     "fields": {"x": {"type": "float"}},
...     "features": [{"kind": "passthrough", "field": "x"}],
... })
>>> rows = [{"source_event_id": f"e{i}", "features": {"x": float(i % 2)}} for i in range(50)]
>>> labels = [{"event_id": f"e{i}", "label": i % 2} for i in range(50)]
>>> model, metrics = learn_stream(spec, rows, labels)
>>> metrics["rows_learned"], metrics["accuracy"] > 0.9
(50.0, True)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.usecase import UseCase
from services.common.errors import InvalidInput
from services.common.models.river_model import RiverModel
from services.online_trainer.contenders import Entrant
from services.online_trainer.drift import ConceptDrift, ConceptDriftMonitor
from services.online_trainer.evaluation import PrequentialMetrics
from services.online_trainer.join import LabelJoin
from services.online_trainer.naive_bayes import score_then_learn
from services.online_trainer.pipeline import build_detector, build_model, model_name


class OnlineLearner:
    """One use case's river model, its prequential metrics and its drift monitor.

    With ``models.online.contenders``, the other models learn and are scored
    on the same rows (:mod:`~services.online_trainer.contenders`).
    """

    # A checkpoint written before contenders existed has none (an instance's list replaces this).
    contenders: list[Entrant] = []  # never changed in place

    def __init__(self, spec: UseCase) -> None:
        online = spec.models.online
        self.name = model_name(spec)
        self.model: RiverModel = build_model(spec)
        self.task = spec.task
        if self.model.binary:
            classes: list[Any] | None = [False, True]
        else:
            classes = spec.label.classes
        self.metrics = PrequentialMetrics(spec.task, online.rolling_window, classes)
        self.contenders = [
            Entrant(
                name,
                build_model(spec, name),
                PrequentialMetrics(spec.task, online.rolling_window, classes),
            )
            for name in online.contenders
            if name != self.name
        ]
        detector = build_detector(spec)
        self.drift = (
            ConceptDriftMonitor(detector, online.drift_detector, history=online.rolling_window)
            if detector is not None
            else None
        )
        self.rows_learned = 0

    def entrants(self) -> list[Entrant]:
        """The spec's model first, then its contenders."""
        return [Entrant(getattr(self, "name", ""), self.model, self.metrics), *self.contenders]

    def learn_one(self, x: dict[str, float], label: Any) -> ConceptDrift | None:
        """Score the models on ``(x, label)``, then learn it; return a drift detection, if any."""
        y = self.model.encode(label)
        error = _score_then_learn(self.task, self.model.estimator, self.metrics, x, y)
        for contender in self.contenders:
            _score_then_learn(self.task, contender.model.estimator, contender.metrics, x, y)
        self.rows_learned += 1
        if error is None or self.drift is None:
            return None
        return self.drift.update(error, self.rows_learned)


def _score_then_learn(
    task: str, estimator: Any, metrics: PrequentialMetrics, x: dict[str, float], y: Any
) -> float | None:
    """Update ``metrics`` with the prediction made before learning ``(x, y)``; its error."""
    error: float | None
    if task == "classification":
        proba: Any = score_then_learn(estimator, x, y)  # learns after predicting, as river does
        if proba:  # river skips the metric while a model has no answer yet; so do we
            y_pred = max(proba, key=proba.get)
            metrics.update(y, y_pred, proba)
            error = 0.0 if y_pred == y else 1.0
        else:
            error = None
        return error
    y_pred = estimator.predict_one(x)
    metrics.update(y, y_pred)
    estimator.learn_one(x, y)
    error = abs(y - y_pred)
    return error


def normalize_label(spec: UseCase, value: Any) -> Any:
    """The label as one of the use case's classes (or a float for regression), by the spec's rule.

    >>> from schemas.usecase import UseCase
    >>> spec = UseCase.model_validate({
    ...     "name": "toy", "task": "classification", "label": {"classes": ["no", "yes"]},
    ...     "fields": {"x": {"type": "float"}},
    ...     "features": [{"kind": "passthrough", "field": "x"}],
    ... })
    >>> normalize_label(spec, "yes"), normalize_label(spec, " Yes")
    ('yes', 'yes')
    >>> normalize_label(spec, "maybe")
    Traceback (most recent call last):
    ...
    services.common.errors.InvalidInput: label 'maybe' is not one of the classes ['no', 'yes']
    """
    cls = spec.class_of(value)
    if cls is not None:
        return cls
    if spec.task == "regression":
        raise InvalidInput(f"label {value!r} is not a finite number")
    raise InvalidInput(f"label {value!r} is not one of the classes {spec.label.classes}")


def numeric_features(features: Mapping[str, Any]) -> dict[str, float]:
    """Feature values as floats (booleans as 0/1); a string value is invalid input.

    >>> numeric_features({"a": 1, "b": True, "c": 0.5})
    {'a': 1.0, 'b': 1.0, 'c': 0.5}
    >>> numeric_features({"a": 0.5, "b": -2.0})
    {'a': 0.5, 'b': -2.0}
    """
    kinds = set(map(type, features.values()))
    if kinds <= {float}:  # what a featurized row holds: a copy is all it takes
        return dict(features)
    out: dict[str, float] = {}
    for name, value in features.items():
        if isinstance(value, str):
            raise InvalidInput(f"feature {name!r} is a string ({value!r}); river needs numbers")
        out[name] = float(value)
    return out


def learn_stream(
    spec: UseCase,
    rows: Iterable[Mapping[str, Any] | Any],
    labels: Iterable[Mapping[str, Any] | Any],
) -> tuple[RiverModel, dict[str, float]]:
    """Join and learn in-memory rows exactly as the service does, without the broker.

    ``rows`` are feature rows (``FeatureRow`` or mappings with
    ``source_event_id`` and ``features``), ``labels`` are labels (``Label`` or
    mappings with ``event_id`` and ``label``). They are offered in turn, one
    row then one label, to the same join and learner the service uses. Returns
    the model and its cumulative metrics plus ``rows_learned``.
    """
    online = spec.models.online
    join = LabelJoin(online.label_ttl_seconds, online.max_pending)
    learner = OnlineLearner(spec)
    clock = 0.0
    for row, label in itertools.zip_longest(rows, labels):
        if row is not None:
            event_id, features = _get(row, "source_event_id"), _get(row, "features")
            joined = join.offer_features(
                event_id, numeric_features(features), _get(row, "event_timestamp", None), clock
            )
            if joined is not None:
                learner.learn_one(joined.features, joined.label)
        if label is not None:
            value = normalize_label(spec, _get(label, "label"))
            joined = join.offer_label(_get(label, "event_id"), value, clock)
            if joined is not None:
                learner.learn_one(joined.features, joined.label)
    metrics = learner.metrics.values()
    metrics["rows_learned"] = float(learner.rows_learned)
    return learner.model, metrics


_MISSING = object()


def _get(item: Any, name: str, default: Any = _MISSING) -> Any:
    if isinstance(item, Mapping):
        return item[name] if default is _MISSING else item.get(name, default)
    return getattr(item, name) if default is _MISSING else getattr(item, name, default)
