"""The pure training pipeline: frame to split, tuning, fit, test evaluation, model and report.

No Kafka and no MLflow here: :func:`train_candidate` takes a use case, the
training frame and its window and returns the model with everything the run
should record. The test rows are used once, after model selection; the
preprocessing statistics come from the training part alone.

The families are fit on the same split: the MLP (tuned), its linear
baseline, and the classical contenders the spec names
(:mod:`~services.batch_trainer.families`). The best on the validation rows
by the primary metric is the candidate; a simpler family within
``promotion.margin`` of the best wins the tie.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from schemas.events import Window
from schemas.slices import SliceScores
from schemas.usecase import LOWER_IS_BETTER, UseCase
from services.batch_trainer.baseline import fit_baseline
from services.batch_trainer.data import DataProfile, PreparedData, check_enough, prepare
from services.batch_trainer.errors import TrainingRefused
from services.batch_trainer.families import (
    BatchModel,
    choose_family,
    family_of,
    fit_hist_gradient_boosting,
)
from services.batch_trainer.reproducibility import pick_device, seed_everything
from services.batch_trainer.slices import slice_metrics
from services.batch_trainer.split import Split, cv_folds, stratified_split, temporal_split
from services.batch_trainer.train import HyperParams, fit_mlp
from services.batch_trainer.tuning import tune
from services.common.metrics import classification_metrics, regression_metrics, scalar_metrics
from services.common.models.linear_model import LinearModel, estimator_weights
from services.common.models.torch_model import Standardizer, TorchModel
from services.common.models.tree_model import TreeModel

logger = logging.getLogger(__name__)


@dataclass
class TrainingReport:
    """Everything a training run records beside the model."""

    usecase: str
    task: str
    spec_hash: str
    window: Window
    profile: DataProfile
    split: dict[str, Any]
    device: str
    seed: int
    params: dict[str, Any]
    trials: list[dict[str, Any]]
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    metrics: dict[str, float]
    confusion_matrix: list[list[int]] | None
    baseline_name: str
    baseline_metrics: dict[str, float]
    baseline_confusion_matrix: list[list[int]] | None
    feature_names: list[str]
    classes: list[Any] | None
    feature_views: list[str] = field(default_factory=list)
    family: str = "mlp"
    validation_scores: dict[str, float] = field(default_factory=dict)
    family_reason: str = ""
    loser_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    cv: dict[str, Any] | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the run's ``report.json``)."""
        document = {k: v for k, v in self.__dict__.items() if k not in ("window", "profile")}
        document["window"] = self.window.model_dump(mode="json")
        document["profile"] = self.profile.as_dict()
        return document


__all__ = ["BatchModel", "TrainingOutcome", "TrainingReport", "choose_family", "family_of"]


@dataclass
class TrainingOutcome:
    """The winning model, its report, the test rows (raw features, truth, scores), the losers."""

    model: BatchModel
    report: TrainingReport
    test_truth: list[Any]
    test_proba: npt.NDArray[np.float64] | None
    test_features: npt.NDArray[np.float64] | None = None
    losers: dict[str, BatchModel] = field(default_factory=dict)  # best validation score first
    slice_metrics: SliceScores = field(default_factory=dict)  # primary metric per slice, test

    @property
    def family(self) -> str:
        return family_of(self.model)

    @property
    def runner_up(self) -> BatchModel | None:
        """The loser with the best validation score (None when one family was fit)."""
        return next(iter(self.losers.values()), None)


def evaluate(
    spec: UseCase, model: BatchModel, matrix: npt.NDArray[np.float64], truth: list[Any]
) -> dict[str, Any]:
    """A model's metrics on raw feature rows (with the confusion matrix for classifiers)."""
    proba = model.proba_array(matrix) if spec.task == "classification" else None
    return _score(spec, truth, model.predict_array(matrix), proba)


def train_candidate(
    spec: UseCase, frame: pd.DataFrame, window: Window, *, device: str | None = None
) -> TrainingOutcome:
    """Train the spec's MLP and baseline on ``frame`` and evaluate both on the held-out test part.

    Raises :class:`TrainingRefused` when the window holds too little to learn from.
    """
    started = time.monotonic()
    batch = spec.models.batch
    seed_everything(batch.seed)
    torch_device = pick_device(device)
    data = prepare(spec, frame, window)
    check_enough(spec, data)
    split = make_split(spec, data)
    classification = spec.task == "classification"
    n_outputs = len(data.classes) if data.classes is not None else 1

    x = {part: data.features[getattr(split, part)] for part in ("train", "validation", "test")}
    y = {part: data.target[getattr(split, part)] for part in ("train", "validation", "test")}
    preprocessing = Standardizer.fit(x["train"])
    target_mean, target_scale = _target_scaling(y["train"], classification)
    xs = {part: preprocessing.transform(matrix) for part, matrix in x.items()}
    ys = y if classification else {k: (v - target_mean) / target_scale for k, v in y.items()}

    fit = partial(
        fit_mlp, xs["train"], ys["train"], xs["validation"], ys["validation"],
        task=spec.task, n_outputs=n_outputs, seed=batch.seed, device=torch_device,
    )  # fmt: skip
    tuned = tune(fit, base=HyperParams.from_spec(batch), tuning=batch.tuning, seed=batch.seed)
    model = TorchModel(
        task=spec.task,
        feature_names=data.feature_names,
        config=tuned.fit.config,
        module=tuned.fit.module,
        preprocessing=preprocessing,
        classes=data.classes,
        target_mean=target_mean,
        target_scale=target_scale,
        metadata={"usecase": spec.name, "spec_hash": spec.spec_hash(), "seed": str(batch.seed)},
    )

    baseline = fit_baseline(
        xs["train"], ys["train"], task=spec.task, class_weights=batch.class_weights, seed=batch.seed
    )
    weights, intercepts = estimator_weights(baseline.estimator, spec.task, data.classes)
    linear = LinearModel(
        task=spec.task, feature_names=data.feature_names, weights=weights, intercepts=intercepts,
        preprocessing=preprocessing, classes=data.classes, target_mean=target_mean,
        target_scale=target_scale, metadata=dict(model.metadata),
    )  # fmt: skip
    families: dict[str, BatchModel] = {"mlp": model, "linear": linear}
    if "hist_gradient_boosting" in batch.contenders:
        estimator = fit_hist_gradient_boosting(
            xs, ys, task=spec.task, class_weights=batch.class_weights, seed=batch.seed
        )
        families["hist_gradient_boosting"] = TreeModel(
            task=spec.task, feature_names=data.feature_names, estimator=estimator,
            preprocessing=preprocessing, classes=data.classes, target_mean=target_mean,
            target_scale=target_scale, metadata=dict(model.metadata),
        )  # fmt: skip
    # The family is chosen on the validation rows; the test rows are looked at once, after.
    validation_truth = _labels(y["validation"], data.classes)
    validation_scores: dict[str, float | None] = {}
    for name, candidate in families.items():
        scores = scalar_metrics(evaluate(spec, candidate, x["validation"], validation_truth))
        validation_scores[name] = scores.get(spec.primary_metric)
    family, reason = choose_family(spec, validation_scores)
    winner = families[family]
    losers = _by_score(spec, {k: v for k, v in families.items() if k != family}, validation_scores)

    truth = _labels(y["test"], data.classes)
    test_proba = winner.proba_array(x["test"]) if classification else None
    test_metrics = evaluate(spec, winner, x["test"], truth)
    baseline_metrics = evaluate(spec, linear, x["test"], truth)
    loser_metrics = {
        name: scalar_metrics(evaluate(spec, loser, x["test"], truth))
        for name, loser in losers.items()
    }

    report = TrainingReport(
        usecase=spec.name,
        task=spec.task,
        spec_hash=spec.spec_hash(),
        window=window,
        profile=data.profile,
        split=_split_summary(split, data, batch.split.temporal),
        device=str(torch_device),
        seed=batch.seed,
        params=tuned.params.as_dict(),
        trials=tuned.trials,
        train_loss=tuned.fit.train_loss,
        val_loss=tuned.fit.val_loss,
        best_epoch=tuned.fit.best_epoch,
        metrics=scalar_metrics(test_metrics),
        confusion_matrix=test_metrics.get("confusion_matrix"),
        baseline_name=baseline.name,
        baseline_metrics=scalar_metrics(baseline_metrics),
        baseline_confusion_matrix=baseline_metrics.get("confusion_matrix"),
        feature_names=data.feature_names,
        classes=data.classes,
        feature_views=data.feature_views,
        family=family,
        validation_scores={k: float(v) for k, v in validation_scores.items() if v is not None},
        family_reason=reason,
        loser_metrics=loser_metrics,
        cv=cross_validate(spec, data, split, tuned.params, torch_device)
        if batch.cv_folds
        else None,
        seconds=time.monotonic() - started,
    )
    logger.info(
        "trained usecase=%s device=%s rows=%d best_epoch=%d family=%s (%s) test %s=%s baseline=%s",
        spec.name,
        torch_device,
        data.profile.rows,
        report.best_epoch,
        family,
        reason,
        spec.primary_metric,
        report.metrics.get(spec.primary_metric),
        report.baseline_metrics.get(spec.primary_metric),
    )
    slices = slice_metrics(spec, winner, x["test"], truth, data.feature_names)
    return TrainingOutcome(winner, report, truth, test_proba, x["test"], losers, slices)


def _by_score(
    spec: UseCase, models: dict[str, BatchModel], scores: dict[str, float | None]
) -> dict[str, BatchModel]:
    """``models`` from the best validation score to the worst (no score last)."""
    sign = -1.0 if spec.primary_metric in LOWER_IS_BETTER else 1.0

    def key(name: str) -> float:
        value = scores.get(name)
        return -sign * value if value is not None and np.isfinite(value) else float("inf")

    return {name: models[name] for name in sorted(models, key=key)}


def make_split(spec: UseCase, data: PreparedData) -> Split:
    """The spec's split of the prepared rows; refuses a part that is empty or one-class."""
    shares = spec.models.batch.split
    if shares.temporal:
        split = temporal_split(data.timestamps, shares)
    else:
        classes = data.target if spec.task == "classification" else None
        split = stratified_split(classes, len(data.target), shares, spec.models.batch.seed)
    empty = [part for part, size in split.sizes().items() if size == 0]
    if empty:
        raise TrainingRefused(
            f"{spec.name}: the {'/'.join(empty)} part of the split is empty "
            f"({data.profile.rows} rows, sizes {split.sizes()}); more data is needed"
        )
    if spec.task == "classification" and np.unique(data.target[split.train]).size < 2:
        raise TrainingRefused(f"{spec.name}: the training part holds a single class")
    return split


def cross_validate(
    spec: UseCase, data: PreparedData, split: Split, params: HyperParams, device: Any
) -> dict[str, Any]:
    """k-fold scores of the chosen configuration on train + validation (never the test part).

    Each fold fits its own preprocessing on its own fitting rows and stops
    early on its evaluation rows, so the scores lean slightly optimistic.
    """
    batch = spec.models.batch
    assert batch.cv_folds is not None
    pool = np.sort(np.concatenate([split.train, split.validation]))
    classification = spec.task == "classification"
    folds = cv_folds(
        len(pool),
        batch.cv_folds,
        temporal=batch.split.temporal,
        classes=data.target[pool] if classification else None,
        seed=batch.seed,
    )
    scores: list[dict[str, float]] = []
    for fit_rows, eval_rows in folds:
        x_fit, x_eval = data.features[pool[fit_rows]], data.features[pool[eval_rows]]
        y_fit, y_eval = data.target[pool[fit_rows]], data.target[pool[eval_rows]]
        preprocessing = Standardizer.fit(x_fit)
        mean, scale = _target_scaling(y_fit, classification)
        result = fit_mlp(
            preprocessing.transform(x_fit), y_fit if classification else (y_fit - mean) / scale,
            preprocessing.transform(x_eval), y_eval if classification else (y_eval - mean) / scale,
            task=spec.task, n_outputs=len(data.classes) if data.classes else 1,
            params=params, seed=batch.seed, device=device,
        )  # fmt: skip
        fold_model = TorchModel(
            task=spec.task, feature_names=data.feature_names, config=result.config,
            module=result.module, preprocessing=preprocessing, classes=data.classes,
            target_mean=mean, target_scale=scale,
        )  # fmt: skip
        proba = fold_model.proba_array(x_eval) if classification else None
        truth = _labels(y_eval, data.classes)
        scores.append(scalar_metrics(_score(spec, truth, fold_model.predict_array(x_eval), proba)))
    names = sorted(set.intersection(*(set(s) for s in scores)))
    return {
        "folds": len(folds),
        "scheme": "expanding_window" if batch.split.temporal else "kfold",
        "mean": {n: float(np.mean([s[n] for s in scores])) for n in names},
        "std": {n: float(np.std([s[n] for s in scores])) for n in names},
        "per_fold": scores,
    }


def _target_scaling(y_train: npt.NDArray[Any], classification: bool) -> tuple[float, float]:
    if classification:
        return 0.0, 1.0
    scale = float(np.std(y_train))
    return float(np.mean(y_train)), scale if scale > 1e-12 else 1.0


def _labels(values: npt.NDArray[Any], classes: list[Any] | None) -> list[Any]:
    if classes is None:
        return [float(v) for v in values]
    return [classes[int(k)] for k in values]


def _score(
    spec: UseCase, truth: list[Any], predicted: list[Any], proba: npt.NDArray[np.float64] | None
) -> dict[str, Any]:
    if spec.task == "regression":
        return dict(regression_metrics(truth, predicted))
    assert spec.label.classes is not None
    return classification_metrics(truth, predicted, proba, spec.label.classes, spec.positive_class)


def _split_summary(split: Split, data: PreparedData, temporal: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {"temporal": temporal, "sizes": split.sizes()}
    for part in ("train", "validation", "test"):
        stamps = data.timestamps[getattr(split, part)]
        summary[f"{part}_time"] = [
            pd.Timestamp(int(stamps.min()), tz="UTC").isoformat(),
            pd.Timestamp(int(stamps.max()), tz="UTC").isoformat(),
        ]
    return summary
