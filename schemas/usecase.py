"""The use-case spec: one prediction problem, declared in one YAML file.

A use case names its input fields (types, ranges, allowed values, how to
clean them), its entity key and timestamp, its label and task, the features
to engineer, the models, the metrics and the promotion and drift policies.
Nothing in a service is specific to one use case.

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
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.classes import ClassRule, Scalar

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

AlertKind = Literal["data", "prediction", "performance", "concept"]
ALERT_KINDS: tuple[AlertKind, ...] = ("data", "prediction", "performance", "concept")


class UseCaseError(ValueError):
    """A use-case file that cannot be read or does not describe a valid use case."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One input field of the raw event, and how to clean it.

    Missing, null and NaN values are imputed with ``impute`` (``reject`` sends
    the event to the dead-letter topic). Values outside ``cap`` are clipped to
    it (outlier treatment); values outside ``min``/``max`` are rejected.
    Categories are matched after ``aliases`` and case folding; one not in
    ``values`` is rejected or mapped to ``other`` as ``unknown`` says.
    """

    type: Literal["float", "int", "bool", "category", "string", "datetime"]
    description: str = ""
    required: bool = True
    min: float | None = None
    max: float | None = None
    cap: tuple[float, float] | None = None
    values: list[Scalar] | None = None
    aliases: dict[str, Scalar] = Field(default_factory=dict)
    unknown: Literal["reject", "other"] = "reject"
    impute: Literal["reject", "mean", "median", "most_frequent", "constant"] = "reject"
    fill: Scalar | None = None
    pseudonymize: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.cap is not None and self.cap[0] > self.cap[1]:
            raise ValueError(f"cap {list(self.cap)} is not an increasing pair")
        if self.impute == "constant" and self.fill is None:
            raise ValueError("impute: constant needs a fill value")
        numeric = self.type in ("float", "int")
        if self.impute in ("mean", "median") and not numeric:
            raise ValueError(f"impute: {self.impute} needs a numeric field, not {self.type}")
        if not numeric and (self.min is not None or self.max is not None or self.cap):
            raise ValueError(f"min, max and cap apply to numeric fields, not {self.type}")
        if self.values is not None and self.type != "category":
            raise ValueError("values apply to category fields only")
        if self.pseudonymize and (self.type not in ("string", "category") or self.values):
            raise ValueError("pseudonymize applies to string fields and open categories only")
        return self


class _Transform(_Strict):
    name: str | None = Field(default=None, description="output feature name")


class Passthrough(_Transform):
    """The cleaned field as it is (numbers and booleans as numbers)."""

    kind: Literal["passthrough"]
    field: str


class Standardize(_Transform):
    """``(x - mean) / std`` with the spec's fixed parameters, so training and serving agree."""

    kind: Literal["standardize"]
    field: str
    mean: float
    std: float = Field(gt=0)


class MinMax(_Transform):
    """``(x - min) / (max - min)``, with fixed bounds."""

    kind: Literal["minmax"]
    field: str
    min: float
    max: float

    @model_validator(mode="after")
    def _bounds(self) -> MinMax:
        if self.max <= self.min:
            raise ValueError("max must be greater than min")
        return self


class OneHot(_Transform):
    """One 0/1 feature per category (the field's ``values``, plus ``other`` if mapped)."""

    kind: Literal["onehot"]
    field: str


class Bin(_Transform):
    """The index of the interval ``x`` falls in, given increasing edges."""

    kind: Literal["bin"]
    field: str
    edges: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _increasing(self) -> Bin:
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"edges {self.edges} are not strictly increasing")
        return self


class DatePart(_Transform):
    """Calendar parts of a datetime field (or the event timestamp)."""

    kind: Literal["date_part"]
    field: str
    parts: list[Literal["hour", "dayofweek", "day", "month", "is_weekend"]] = Field(min_length=1)


class Ratio(_Transform):
    """``numerator / denominator``; 0 where the denominator is 0."""

    kind: Literal["ratio"]
    numerator: str
    denominator: str


class Log1p(_Transform):
    """``log(1 + max(x, 0))`` for heavy-tailed amounts."""

    kind: Literal["log1p"]
    field: str


Transform = Annotated[
    Passthrough | Standardize | MinMax | OneHot | Bin | DatePart | Ratio | Log1p,
    Field(discriminator="kind"),
]


class LabelSpec(_Strict):
    """The target: its name on the labels topic and, for classifiers, its classes.

    Labels are matched to ``classes`` by the one class rule (:mod:`schemas.classes`).
    """

    name: str = "label"
    classes: list[Scalar] | None = None
    positive: Scalar | None = None


class OnlineModelSpec(_Strict):
    """The online trainer's river pipeline and its snapshot and drift policy."""

    model: (
        Literal[
            "logistic_regression",
            "hoeffding_tree",
            "adaptive_random_forest",
            "linear_regression",
            "hoeffding_tree_regressor",
            "adaptive_random_forest_regressor",
        ]
        | None
    ) = None
    params: dict[str, Any] = Field(default_factory=dict)
    scale: bool = True
    rolling_window: int = Field(default=1000, gt=0)
    snapshot_every_rows: int = Field(default=2000, gt=0)
    snapshot_every_seconds: float = Field(default=60.0, gt=0)
    label_ttl_seconds: float = Field(default=3600.0, gt=0)
    max_pending: int = Field(default=100_000, gt=0)
    drift_detector: Literal["adwin", "kswin", "page_hinkley", "none"] = "adwin"
    drift_params: dict[str, Any] = Field(default_factory=dict)


class TuningSpec(_Strict):
    """Optuna search bounds."""

    trials: int = Field(default=8, ge=0)
    timeout_seconds: float = Field(default=120.0, gt=0)
    pruner: Literal["hyperband", "median", "none"] = "hyperband"


class SplitSpec(_Strict):
    """Train / validation / test shares; time-ordered unless ``temporal`` is false."""

    train: float = Field(default=0.7, gt=0, lt=1)
    validation: float = Field(default=0.2, gt=0, lt=1)
    test: float = Field(default=0.1, gt=0, lt=1)
    temporal: bool = True

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSpec:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1, not {total:g}")
        return self


class ExportSpec(_Strict):
    """What the batch trainer exports beside the MLP's torch file."""

    onnx: bool = Field(default=True, description="export to ONNX (served when onnxruntime is)")
    quantize: Literal["int8"] | None = Field(
        default=None, description="also a dynamically quantized copy of the ONNX file"
    )


class BatchModelSpec(_Strict):
    """The batch trainer's torch MLP, its training loop and its tuning."""

    hidden_layers: list[int] = Field(default_factory=lambda: [64, 32])
    activation: Literal["relu", "gelu", "tanh", "silu"] = "relu"
    dropout: float = Field(default=0.1, ge=0, lt=1)
    optimizer: Literal["adam", "adamw"] = "adamw"
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    batch_size: int = Field(default=256, gt=0)
    max_epochs: int = Field(default=50, gt=0)
    patience: int = Field(default=5, gt=0)
    grad_clip: float | None = Field(default=1.0, gt=0)
    class_weights: bool = True
    window_seconds: float | None = Field(default=None, gt=0)
    min_rows: int = Field(default=200, gt=0)
    seed: int = 42
    cv_folds: int | None = Field(default=None, ge=2)
    split: SplitSpec = Field(default_factory=SplitSpec)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)


class ModelsSpec(_Strict):
    online: OnlineModelSpec = Field(default_factory=OnlineModelSpec)
    batch: BatchModelSpec = Field(default_factory=BatchModelSpec)


class MetricsSpec(_Strict):
    """The primary metric decides promotions; ``report`` lists what is logged."""

    primary: str | None = None
    report: list[str] | None = None


class PromotionSpec(_Strict):
    """How a candidate replaces the champion."""

    mode: Literal["direct", "canary", "shadow"] = "direct"
    margin: float = Field(default=0.0, ge=0, description="how much better a candidate must be")
    min_quality: float | None = Field(default=None, description="first champion's floor")
    eval_rows: int = Field(default=1000, gt=0)
    canary_share: float = Field(default=0.1, gt=0, lt=1)
    canary_min_count: int = Field(default=200, gt=0)
    retrain_cooldown_seconds: float = Field(default=300.0, ge=0)
    accept_online_candidates: bool | Literal["until_champion"] = Field(
        default=False,
        description="gate online snapshots too: always (true), never (false), or only "
        "while the use case has no champion yet (until_champion: a fast first model)",
    )


class DriftSpec(_Strict):
    """When the drift detector raises an alert."""

    window_rows: int = Field(default=1000, gt=0)
    step_rows: int = Field(default=500, gt=0)
    reference_rows: int = Field(default=5000, gt=0)
    min_rows: int = Field(default=200, gt=0)
    method: Literal["ks", "chisquare", "psi", "wasserstein", "jensenshannon"] | None = None
    threshold: float | None = None
    drift_share: float = Field(default=0.3, gt=0, le=1)
    features: list[str] | None = None
    cooldown_seconds: float = Field(default=120.0, ge=0)
    retrain_on: list[AlertKind] = Field(
        default_factory=lambda: list(ALERT_KINDS),
        description="alert kinds that ask for a retrained model (others are only reported)",
    )
    max_missing_share: float = Field(default=0.1, ge=0, le=1)


class DemoSpec(_Strict):
    """Where ``driftline demo`` draws its stream from (data that ships in a package)."""

    source: str
    params: dict[str, Any] = Field(default_factory=dict)
    drift_params: dict[str, Any] = Field(default_factory=dict)
    label_delay_seconds: float = Field(default=1.0, ge=0)


class UseCase(_Strict):
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
    demo: DemoSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> UseCase:
        known = set(self.fields)
        for index, transform in enumerate(self.features):
            for ref in _field_refs(transform):
                if ref not in known and ref != self.timestamp_field:
                    raise ValueError(
                        f"features[{index}] ({transform.kind}) names field {ref!r}, "
                        f"which is not among fields: {sorted(known)}"
                    )
            if isinstance(transform, OneHot) and not self.fields[transform.field].values:
                raise ValueError(f"features[{index}] one-hot needs values on {transform.field!r}")
            for ref in _field_refs(transform):
                kind = self.fields[ref].type if ref in known else "datetime"
                if kind not in _INPUT_TYPES[transform.kind]:
                    raise ValueError(
                        f"features[{index}] ({transform.kind}) cannot use field {ref!r} "
                        f"of type {kind}; it takes {', '.join(_INPUT_TYPES[transform.kind])}"
                    )
        if self.task == "classification":
            if not self.label.classes or len(self.label.classes) < 2:
                raise ValueError("label.classes: a classification use case needs two or more")
            # The rule refuses classes that no label could tell apart (1 and "1").
            rule = ClassRule(self.task, self.label.classes)
            if self.label.positive is not None and rule.class_of(self.label.positive) is None:
                raise ValueError(f"label.positive {self.label.positive!r} is not a class")
            self.__dict__["_class_rule"] = rule
        allowed = self.allowed_metrics()
        for metric in [self.metrics.primary, *(self.metrics.report or [])]:
            if metric is not None and metric not in allowed:
                raise ValueError(f"metrics: {metric!r} is not a {self.task} metric {allowed}")
        names = self.feature_names()
        if len(names) != len(set(names)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"features: duplicate output names {dupes}")
        return self

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
        return [name for t in self.features for name in _output_names(t, self)]

    def spec_hash(self) -> str:
        """sha256 of the canonical spec: lineage for every model trained on it."""
        document = self.model_dump(mode="json", exclude={"description", "demo"})
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


# The field types each transform can compute a number from.
_INPUT_TYPES: dict[str, tuple[str, ...]] = {
    "passthrough": ("float", "int", "bool", "datetime"),
    "standardize": ("float", "int", "bool"),
    "minmax": ("float", "int", "bool"),
    "onehot": ("category",),
    "bin": ("float", "int"),
    "date_part": ("datetime",),
    "ratio": ("float", "int", "bool"),
    "log1p": ("float", "int"),
}


def _field_refs(transform: Transform) -> list[str]:
    if isinstance(transform, Ratio):
        return [transform.numerator, transform.denominator]
    return [transform.field]


def _output_names(transform: Transform, spec: UseCase) -> list[str]:
    if isinstance(transform, Ratio):
        return [transform.name or f"{transform.numerator}_per_{transform.denominator}"]
    base = transform.name or transform.field
    if isinstance(transform, OneHot):
        values = list(spec.fields[transform.field].values or [])
        if spec.fields[transform.field].unknown == "other":
            values.append("other")
        return [f"{base}_{_slug(v)}" for v in values]
    if isinstance(transform, DatePart):
        return [f"{base}_{part}" for part in transform.parts]
    if isinstance(transform, Passthrough):
        return [base]
    suffix = {"standardize": "z", "minmax": "scaled", "bin": "bin", "log1p": "log1p"}
    return [transform.name or f"{transform.field}_{suffix[transform.kind]}"]


def _slug(value: Scalar) -> str:
    """A category as part of a feature name that every store accepts (MLflow refuses ``=``).

    >>> _slug("Gold Plus"), _slug(3)
    ('Gold_Plus', '3')
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(value))


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
