"""How a use case learns, is judged and is watched: its label, models, metrics and policies.

The label and its classes, the online and batch model specs (with the batch
trainer's split, tuning and export), the metrics, the promotion policy, the
drift policy and the demo stream. :class:`~schemas.usecase.UseCase` holds one
of each.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from schemas.classes import Scalar
from schemas.slices import BacktestPolicy
from schemas.strict import Strict

AlertKind = Literal["data", "prediction", "performance", "concept"]
ALERT_KINDS: tuple[AlertKind, ...] = ("data", "prediction", "performance", "concept")


class LabelSpec(Strict):
    """The target: its name on the labels topic and, for classifiers, its classes.

    Labels are matched to ``classes`` by the one class rule (:mod:`schemas.classes`).
    """

    name: str = "label"
    classes: list[Scalar] | None = None
    positive: Scalar | None = None


OnlineModelName = Literal[
    "logistic_regression",
    "hoeffding_tree",
    "adaptive_random_forest",
    "linear_regression",
    "hoeffding_tree_regressor",
    "adaptive_random_forest_regressor",
]
ONLINE_MODELS: dict[str, tuple[str, ...]] = {
    "classification": ("logistic_regression", "hoeffding_tree", "adaptive_random_forest"),
    "regression": (
        "linear_regression",
        "hoeffding_tree_regressor",
        "adaptive_random_forest_regressor",
    ),
}
BatchContender = Literal["hist_gradient_boosting"]


def _unique(names: list[str], where: str) -> None:
    if len(names) != len(set(names)):
        raise ValueError(f"{where}: a contender is named twice in {names}")


class OnlineModelSpec(Strict):
    """The online trainer's river pipeline and its snapshot and drift policy."""

    model: OnlineModelName | None = None
    contenders: list[OnlineModelName] = Field(
        default_factory=list,
        description="other river models learning the same stream (default parameters); "
        "each snapshot takes the best by the rolling primary metric",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    scale: bool = True
    rolling_window: int = Field(default=1000, gt=0)
    snapshot_every_rows: int = Field(default=2000, gt=0)
    snapshot_every_seconds: float = Field(default=60.0, gt=0)
    label_ttl_seconds: float = Field(default=3600.0, gt=0)
    max_pending: int = Field(default=100_000, gt=0)
    drift_detector: Literal["adwin", "kswin", "page_hinkley", "none"] = "adwin"
    drift_params: dict[str, Any] = Field(default_factory=dict)


class TuningSpec(Strict):
    """Optuna search bounds."""

    trials: int = Field(default=8, ge=0)
    timeout_seconds: float = Field(default=120.0, gt=0)
    pruner: Literal["hyperband", "median", "none"] = "hyperband"


class SplitSpec(Strict):
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


class ExportSpec(Strict):
    """What the batch trainer exports beside the MLP's torch file."""

    onnx: bool = Field(default=True, description="export to ONNX (served when onnxruntime is)")
    quantize: Literal["int8"] | None = Field(
        default=None, description="also a dynamically quantized copy of the ONNX file"
    )
    serve: Literal["onnx", "int8"] = Field(
        default="onnx", description="the export inference serves (int8 needs quantize: int8)"
    )

    @model_validator(mode="after")
    def _served_is_exported(self) -> ExportSpec:
        if self.serve == "int8" and self.quantize != "int8":
            raise ValueError("serve: int8 needs quantize: int8")
        return self


class BatchModelSpec(Strict):
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
    contenders: list[BatchContender] = Field(
        default_factory=list,
        description="classical families fit on the same split beside the MLP and linear",
    )


class ModelsSpec(Strict):
    online: OnlineModelSpec = Field(default_factory=OnlineModelSpec)
    batch: BatchModelSpec = Field(default_factory=BatchModelSpec)

    def check_task(self, task: str) -> None:
        """Refuse contenders named twice, or an online contender of the other task."""
        _unique(list(self.batch.contenders), "models.batch.contenders")
        _unique(list(self.online.contenders), "models.online.contenders")
        for name in self.online.contenders:
            if name not in ONLINE_MODELS[task]:
                raise ValueError(
                    f"models.online.contenders: {name!r} is not a {task} model "
                    f"({', '.join(ONLINE_MODELS[task])})"
                )


class MetricsSpec(Strict):
    """The primary metric decides promotions; ``report`` lists what is logged."""

    primary: str | None = None
    report: list[str] | None = None


class PromotionSpec(Strict):
    """How a candidate replaces the champion."""

    mode: Literal["direct", "canary", "shadow"] = "direct"
    margin: float = Field(default=0.0, ge=0, description="how much better a candidate must be")
    min_quality: float | None = Field(default=None, description="first champion's floor")
    eval_rows: int = Field(default=1000, gt=0)
    canary_share: float = Field(default=0.1, gt=0, lt=1)
    canary_min_count: int = Field(default=200, gt=0)
    retrain_cooldown_seconds: float = Field(default=300.0, ge=0)
    max_slice_loss: float | None = Field(
        default=None,
        ge=0,
        description="refuse a candidate worse than the champion on a slice "
        "(see the use case's slices) by more than this",
    )
    backtest: BacktestPolicy | None = Field(
        default=None, description="back-test each candidate against the champion first"
    )
    accept_online_candidates: bool | Literal["until_champion"] = Field(
        default=False,
        description="gate online snapshots too: always (true), never (false), or only "
        "while the use case has no champion yet (until_champion: a fast first model)",
    )


class DriftSpec(Strict):
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


class DemoSpec(Strict):
    """Where ``driftline demo`` draws its stream from (data that ships in a package)."""

    source: str
    params: dict[str, Any] = Field(default_factory=dict)
    drift_params: dict[str, Any] = Field(default_factory=dict)
    label_delay_seconds: float = Field(default=1.0, ge=0)


LabelStrategy = Literal["margin", "entropy", "spread", "random"]
"""How a served prediction's uncertainty is scored (services/online_trainer/labeling.py)."""


class ActiveLearningSpec(Strict):
    """Ask for the labels of the predictions the model is least sure of, within a budget.

    Every ``interval_seconds`` the most uncertain served predictions of the
    interval are requested, ``budget_per_hour * interval_seconds / 3600`` of
    them on average; no sliding hour ever holds more than ``budget_per_hour``.
    ``margin`` and ``entropy`` score a classifier's probabilities, ``spread``
    a regressor's predictive spread, ``random`` draws uniformly (the baseline).
    """

    budget_per_hour: int = Field(gt=0, description="label requests an hour at most")
    strategy: LabelStrategy = "margin"
    interval_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="how often the most uncertain are chosen"
    )
