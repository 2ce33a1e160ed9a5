"""Building the river pipeline and the drift detector a use case names.

>>> from schemas.usecase import UseCase
>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "classification", "label": {"classes": [0, 1]},
...     "fields": {"x": {"type": "float"}},
...     "features": [{"kind": "passthrough", "field": "x"}],
... })
>>> [type(step).__name__ for step in build_estimator(spec).steps.values()]
['StandardScaler', 'LogisticRegression']
>>> type(build_detector(spec)).__name__
'ADWIN'
"""

from __future__ import annotations

from typing import Any

from river import compose, drift, forest, linear_model, multiclass, preprocessing, tree

from schemas.usecase import UseCase
from services.common.models.river_model import RiverModel
from services.online_trainer.errors import SpecError

CLASSIFIERS = {
    "logistic_regression": linear_model.LogisticRegression,
    "hoeffding_tree": tree.HoeffdingTreeClassifier,
    "adaptive_random_forest": forest.ARFClassifier,
}
REGRESSORS = {
    "linear_regression": linear_model.LinearRegression,
    "hoeffding_tree_regressor": tree.HoeffdingTreeRegressor,
    "adaptive_random_forest_regressor": forest.ARFRegressor,
}
DETECTORS = {"adwin": drift.ADWIN, "kswin": drift.KSWIN, "page_hinkley": drift.PageHinkley}


def model_name(spec: UseCase) -> str:
    """The online model's name in the spec, or the task's default."""
    default = "logistic_regression" if spec.task == "classification" else "linear_regression"
    return spec.models.online.model or default


def build_estimator(spec: UseCase, name: str | None = None) -> Any:
    """A fresh river estimator for ``spec``: ``StandardScaler | model`` unless ``scale`` is off.

    ``name`` is the spec's model unless told (a contender: river's defaults, no ``params``).
    """
    online = spec.models.online
    params = online.params if name is None or name == model_name(spec) else {}
    name = name or model_name(spec)
    table = CLASSIFIERS if spec.task == "classification" else REGRESSORS
    if name not in table:
        raise SpecError(f"{spec.name}: models.online.model {name!r} is not a {spec.task} model")
    try:
        estimator: Any = table[name](**params)
    except TypeError as exc:
        raise SpecError(f"{spec.name}: models.online.params for {name}: {exc}") from exc
    classes = spec.label.classes or []
    if name == "logistic_regression" and len(classes) > 2:
        estimator = multiclass.OneVsRestClassifier(estimator)
    if online.scale:
        return compose.Pipeline(preprocessing.StandardScaler(), estimator)
    return estimator


def build_model(spec: UseCase, name: str | None = None) -> RiverModel:
    """The estimator (the spec's model unless ``name`` says) with the use case's label mapping."""
    return RiverModel(
        build_estimator(spec, name),
        spec.task,
        classes=spec.label.classes,
        positive=spec.positive_class,
    )


def build_detector(spec: UseCase) -> Any | None:
    """The concept-drift detector on the error stream (None when ``drift_detector: none``)."""
    online = spec.models.online
    if online.drift_detector == "none":
        return None
    detector: Any = DETECTORS[online.drift_detector]
    try:
        return detector(**online.drift_params)
    except TypeError as exc:
        raise SpecError(f"{spec.name}: models.online.drift_params: {exc}") from exc
