"""The pure training pipeline: frame to split, tuning, fit, test evaluation, model and report.

No Kafka and no MLflow here: :func:`train_candidate` takes a use case, the
training frame and its window and returns the model with everything the run
should record. The test rows are used once, after model selection; the
preprocessing statistics come from the training part alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from schemas.events import Window
from schemas.usecase import UseCase
from services.batch_trainer.baseline import fit_baseline
from services.batch_trainer.data import DataProfile, PreparedData, check_enough, prepare
from services.batch_trainer.errors import TrainingRefused
from services.batch_trainer.reproducibility import pick_device, seed_everything
from services.batch_trainer.split import Split, cv_folds, stratified_split, temporal_split
from services.batch_trainer.train import HyperParams, fit_mlp
from services.batch_trainer.tuning import tune
from services.common.metrics import classification_metrics, regression_metrics, scalar_metrics
from services.common.models.torch_model import Standardizer, TorchModel

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
    cv: dict[str, Any] | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the run's ``report.json``)."""
        document = {k: v for k, v in self.__dict__.items() if k not in ("window", "profile")}
        document["window"] = self.window.model_dump(mode="json")
        document["profile"] = self.profile.as_dict()
        return document


@dataclass
class TrainingOutcome:
    """The trained model, its report, and the test rows' truth and scores for the plots."""

    model: TorchModel
    report: TrainingReport
    test_truth: list[Any]
    test_proba: npt.NDArray[np.float64] | None


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

    tuned = tune(
        xs["train"], ys["train"], xs["validation"], ys["validation"],
        task=spec.task, n_outputs=n_outputs, base=HyperParams.from_spec(batch),
        tuning=batch.tuning, seed=batch.seed, device=torch_device,
    )  # fmt: skip
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

    # The one look at the test rows: the selected model and the baseline, side by side.
    truth = _labels(y["test"], data.classes)
    test_proba = model.proba_array(x["test"]) if classification else None
    test_metrics = _score(spec, truth, model.predict_array(x["test"]), test_proba)
    baseline = fit_baseline(
        xs["train"], ys["train"], task=spec.task, class_weights=batch.class_weights, seed=batch.seed
    )
    if classification:
        baseline_proba = baseline.proba(xs["test"], n_outputs)
        baseline_pred = _labels(baseline_proba.argmax(axis=1), data.classes)
        baseline_metrics = _score(spec, truth, baseline_pred, baseline_proba)
    else:
        baseline_pred = list(baseline.predict_index(xs["test"]) * target_scale + target_mean)
        baseline_metrics = _score(spec, truth, baseline_pred, None)

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
        cv=cross_validate(spec, data, split, tuned.params, torch_device)
        if batch.cv_folds
        else None,
        seconds=time.monotonic() - started,
    )
    logger.info(
        "trained usecase=%s device=%s rows=%d best_epoch=%d %s=%s baseline=%s",
        spec.name,
        torch_device,
        data.profile.rows,
        report.best_epoch,
        spec.primary_metric,
        report.metrics.get(spec.primary_metric),
        report.baseline_metrics.get(spec.primary_metric),
    )
    return TrainingOutcome(model, report, truth, test_proba)


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
