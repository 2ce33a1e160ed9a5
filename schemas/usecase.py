"""The use-case spec: one prediction problem, declared in one YAML file.

A use case names its input fields (types, ranges, allowed values, how to
clean them), its entity key and timestamp, its label and task, the features
to engineer, the models, the metrics and the promotion and drift policies.
Nothing in a service is specific to one use case. The inputs and features
are declared in :mod:`schemas.fields`, the label, models and policies in
:mod:`schemas.policies`; this module holds the whole, its derived facts and
its loading, and re-exports the parts.

>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "classification",
...     "label": {"classes": [0, 1]},
...     "fields": {"x": {"type": "float", "min": 0}},
...     "features": [{"kind": "passthrough", "field": "x"}],
... })
>>> spec.feature_names()
['x']
>>> spec.primary_metric
'roc_auc'
>>> spec.class_of("1.0"), spec.class_of(True), spec.class_of("maybe")
(1, 1, None)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from schemas.classes import ClassRule, Scalar
from schemas.fields import INPUT_TYPES, FieldSpec, OneHot, Transform, field_refs, output_names
from schemas.policies import (
    ALERT_KINDS,
    ActiveLearningSpec,
    AlertKind,
    BatchModelSpec,
    DemoSpec,
    DriftSpec,
    ExportSpec,
    LabelSpec,
    MetricsSpec,
    ModelsSpec,
    OnlineModelSpec,
    PromotionSpec,
    SplitSpec,
    TuningSpec,
)
from schemas.slices import SliceSpec
from schemas.strict import Strict

# The spec's parts live in schemas.fields and schemas.policies; the field spec
# and every policy are importable from here too, where most callers look for them
# (the transforms from schemas.fields).
__all__ = [
    "ALERT_KINDS",
    "CLASSIFICATION_METRICS",
    "LOWER_IS_BETTER",
    "REGRESSION_METRICS",
    "ActiveLearningSpec",
    "AlertKind",
    "BatchModelSpec",
    "DemoSpec",
    "DriftSpec",
    "ExportSpec",
    "FieldSpec",
    "LabelSpec",
    "MetricsSpec",
    "ModelsSpec",
    "OnlineModelSpec",
    "PromotionSpec",
    "SplitSpec",
    "Task",
    "Transform",
    "TuningSpec",
    "UseCase",
    "UseCaseError",
    "load_usecase",
    "load_usecases",
]

CLASSIFICATION_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "specificity",
)
REGRESSION_METRICS = ("mae", "mse", "rmse", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "mse", "rmse"})

Task = Literal["classification", "regression"]
"""What a use case predicts: a class from a fixed set, or a number."""


class UseCaseError(ValueError):
    """A use-case file that cannot be read or does not describe a valid use case."""


class UseCase(Strict):
    """One prediction problem."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    description: str = ""
    task: Task
    entity_key: str = "entity_id"
    timestamp_field: str = "timestamp"
    max_event_bytes: int = Field(default=64 * 1024, gt=0)
    label: LabelSpec = Field(default_factory=LabelSpec)
    fields: dict[str, FieldSpec] = Field(min_length=1)
    features: list[Transform] = Field(min_length=1)
    models: ModelsSpec = Field(default_factory=ModelsSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)
    slices: list[SliceSpec] = Field(
        default_factory=list, description="groups the model is judged on one by one (fairness)"
    )
    active_learning: ActiveLearningSpec | None = Field(
        default=None, description="label requests where the model is least sure, within a budget"
    )
    demo: DemoSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> UseCase:
        known = set(self.fields)
        for index, transform in enumerate(self.features):
            for ref in field_refs(transform):
                if ref not in known and ref != self.timestamp_field:
                    raise ValueError(
                        f"features[{index}] ({transform.kind}) names field {ref!r}, "
                        f"which is not among fields: {sorted(known)}"
                    )
            if isinstance(transform, OneHot) and not self.fields[transform.field].values:
                raise ValueError(f"features[{index}] one-hot needs values on {transform.field!r}")
            for ref in field_refs(transform):
                kind = self.fields[ref].type if ref in known else "datetime"
                if kind not in INPUT_TYPES[transform.kind]:
                    raise ValueError(
                        f"features[{index}] ({transform.kind}) cannot use field {ref!r} "
                        f"of type {kind}; it takes {', '.join(INPUT_TYPES[transform.kind])}"
                    )
        if self.task == "classification":
            if not self.label.classes or len(self.label.classes) < 2:
                raise ValueError("label.classes: a classification use case needs two or more")
            # The rule refuses classes that no label could tell apart (1 and "1").
            rule = ClassRule(self.task, self.label.classes)
            if self.label.positive is not None and rule.class_of(self.label.positive) is None:
                raise ValueError(f"label.positive {self.label.positive!r} is not a class")
            self.__dict__["_class_rule"] = rule
        self.models.check_task(self.task)
        allowed = self.allowed_metrics()
        for metric in [self.metrics.primary, *(self.metrics.report or [])]:
            if metric is not None and metric not in allowed:
                raise ValueError(f"metrics: {metric!r} is not a {self.task} metric {allowed}")
        names = self.feature_names()
        if len(names) != len(set(names)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"features: duplicate output names {dupes}")
        self._check_active_learning()
        self._check_slices(names)
        return self

    def _check_slices(self, names: list[str]) -> None:
        if self.promotion.max_slice_loss is not None and not self.slices:
            raise ValueError("promotion.max_slice_loss: the use case declares no slices")
        onehot = {t.field for t in self.features if isinstance(t, OneHot)}
        seen: set[str] = set()
        for index, piece in enumerate(self.slices):
            if piece.name in seen:
                raise ValueError(f"slices[{index}]: duplicate slice name {piece.name!r}")
            seen.add(piece.name)
            if piece.feature not in names and piece.feature not in onehot:
                raise ValueError(
                    f"slices[{index}] ({piece.name}): {piece.feature!r} is neither a feature "
                    f"{names} nor a one-hot encoded field {sorted(onehot)}"
                )

    def _check_active_learning(self) -> None:
        policy = self.active_learning
        if policy is None or policy.strategy == "random":
            return
        if policy.strategy in ("margin", "entropy") and self.task != "classification":
            raise ValueError(
                f"active_learning.strategy {policy.strategy!r} scores class probabilities: "
                "a classification strategy; a regression use case takes spread or random"
            )
        if policy.strategy == "spread":
            if self.task != "regression":
                raise ValueError(
                    "active_learning.strategy 'spread' is for regression; "
                    "a classifier takes margin, entropy or random"
                )
            # Served regression predictions carry one number and no spread (schemas.events.
            # Prediction); a model that gives one would add it there first.
            raise ValueError(
                "active_learning.strategy 'spread' needs a predictive spread, and no "
                "regression model driftline serves gives one (a prediction is one number); "
                "use random"
            )

    # ---- derived facts every service needs -------------------------------------

    def allowed_metrics(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS

    @property
    def primary_metric(self) -> str:
        """The metric promotions are decided on (``roc_auc`` / ``rmse`` unless set)."""
        default = "roc_auc" if self.task == "classification" else "rmse"
        return self.metrics.primary or default

    @property
    def positive_class(self) -> Scalar | None:
        """The class whose probability is the score, for binary classifiers."""
        if self.task != "classification" or not self.label.classes:
            return None
        if self.label.positive is not None:
            return self.class_of(self.label.positive)
        return self.label.classes[-1] if len(self.label.classes) == 2 else None

    def class_of(self, value: object) -> Scalar | None:
        """The declared class a raw label or predicted value denotes, or None if it names none.

        One rule for every service (:mod:`schemas.classes`): ``1``, ``1.0``,
        ``"1"``, ``"1.0"``, ``True`` and ``"true"`` are one class; text is
        matched without blanks and case. For regression: the finite float.
        """
        return self._rule().class_of(value)

    def probabilities_of(self, proba: Mapping[Any, float]) -> dict[Scalar, float]:
        """A probability map keyed by the declared classes (its keys may be any spelling)."""
        return self._rule().probabilities_of(proba)

    def _rule(self) -> ClassRule:
        # Kept in the instance dict, not a field, so equality, dumps and the spec
        # hash ignore it; rebuilt when a model_copy put another label or task in.
        rule = self.__dict__.get("_class_rule")
        if not isinstance(rule, ClassRule) or not rule.serves(self.task, self.label.classes):
            rule = ClassRule(self.task, self.label.classes)
            self.__dict__["_class_rule"] = rule
        return rule

    def feature_names(self) -> list[str]:
        """Names of the engineered features, in a stable order."""
        return [name for t in self.features for name in output_names(t, self.fields)]

    def spec_hash(self) -> str:
        """sha256 of the canonical spec: lineage for every model trained on it."""
        # The label-request policy changes which labels come, not what is learned from them.
        unhashed = {"description", "demo", "active_learning"}
        document = self.model_dump(mode="json", exclude=unhashed)
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _format_error(path: Path | str, error: ValidationError) -> str:
    lines = [f"{path}: invalid use case ({error.error_count()} problem(s))"]
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"  {where}: {problem['msg']}")
    return "\n".join(lines)


def load_usecase(path: Path | str) -> UseCase:
    """Read and check one use-case YAML file.

    Raises :class:`UseCaseError` naming the file and each bad field.
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UseCaseError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise UseCaseError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise UseCaseError(f"{path}: expected a mapping at the top level")
    document.setdefault("name", path.stem)
    try:
        spec = UseCase.model_validate(document)
    except ValidationError as exc:
        raise UseCaseError(_format_error(path, exc)) from exc
    if spec.name != path.stem:
        raise UseCaseError(f"{path}: name {spec.name!r} must match the file name {path.stem!r}")
    return spec


def load_usecases(directory: Path | str) -> dict[str, UseCase]:
    """Every ``*.yaml`` use case in a directory, by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UseCaseError(f"{directory}: no such use-case directory")
    specs = [load_usecase(p) for p in sorted(directory.glob("*.yaml"))]
    return {spec.name: spec for spec in specs}
