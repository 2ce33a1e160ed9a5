"""Benchmark B3: the trainer's prequential metrics are river's, to the last digit."""

from __future__ import annotations

import pytest
from river import evaluate, linear_model, metrics, preprocessing, tree

from services.online_trainer.learner import OnlineLearner, learn_stream
from tests.online_trainer.conftest import agrawal_rows, agrawal_spec, as_events

RIVER_METRICS = {
    "accuracy": metrics.Accuracy,
    "precision": metrics.Precision,
    "recall": metrics.Recall,
    "f1": metrics.F1,
    "roc_auc": metrics.ROCAUC,
    "log_loss": metrics.LogLoss,
}


@pytest.mark.parametrize("name", sorted(RIVER_METRICS))
def test_learn_stream_equals_progressive_val_score(name: str) -> None:
    data = agrawal_rows(1500, seed=11)
    rows, labels = as_events(data)

    _, ours = learn_stream(agrawal_spec(), rows, labels)

    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    theirs = evaluate.progressive_val_score(data, model, RIVER_METRICS[name]())
    assert ours[name] == theirs.get()  # exact, not approximate
    assert ours["rows_learned"] == 1500


def test_hoeffding_tree_fidelity_with_every_metric_at_once() -> None:
    data = agrawal_rows(1200, seed=3)
    learner = OnlineLearner(agrawal_spec(model="hoeffding_tree", scale=False))
    for x, y in data:
        learner.learn_one(x, y)

    collection = metrics.Accuracy() + metrics.F1() + metrics.ROCAUC() + metrics.LogLoss()
    evaluate.progressive_val_score(data, tree.HoeffdingTreeClassifier(), collection)
    accuracy, f1, roc_auc, log_loss = (m.get() for m in collection)
    ours = learner.metrics.values()
    assert (ours["accuracy"], ours["f1"], ours["roc_auc"], ours["log_loss"]) == (
        accuracy,
        f1,
        roc_auc,
        log_loss,
    )


def test_rolling_metrics_cover_the_last_window_only() -> None:
    data = agrawal_rows(600, seed=5)
    learner = OnlineLearner(agrawal_spec(rolling_window=100))
    window = metrics.Accuracy()
    predictions = []
    for x, y in data:
        proba = learner.model.estimator.predict_proba_one(x)
        predictions.append((y == 1, max(proba, key=proba.get)))
        learner.learn_one(x, y)
    for y_true, y_pred in predictions[-100:]:
        window.update(y_true, y_pred)
    assert learner.metrics.rolling_values()["accuracy"] == pytest.approx(window.get())
    assert sum(map(sum, learner.metrics.confusion_matrix() or [])) == 600


@pytest.mark.parametrize("classes", [[False, True], ["a", "b", "c"]])
def test_every_rolling_metric_is_the_metric_of_the_last_window(classes: list[object]) -> None:
    import random

    from services.online_trainer.evaluation import PrequentialMetrics

    draw = random.Random(3)
    stream = []
    for _ in range(700):
        weights = [draw.random() + 1e-3 for _ in classes]
        proba = {c: w / sum(weights) for c, w in zip(classes, weights, strict=True)}
        stream.append((draw.choice(classes), max(proba, key=proba.__getitem__), proba))
    running = PrequentialMetrics("classification", window=200, classes=classes)
    for y_true, y_pred, proba in stream:
        running.update(y_true, y_pred, proba)
    fresh = PrequentialMetrics("classification", window=200, classes=classes)
    for y_true, y_pred, proba in stream[-200:]:
        fresh.update(y_true, y_pred, proba)
    assert running.rolling_values() == pytest.approx(fresh.rolling_values())
    assert running.rolling_values()["accuracy"] == fresh.rolling_values()["accuracy"]
    everything = PrequentialMetrics("classification", window=10**6, classes=classes)
    for y_true, y_pred, proba in stream:
        everything.update(y_true, y_pred, proba)
    assert running.values() == everything.values()


def test_regression_fidelity() -> None:
    from river import datasets

    from schemas.usecase import UseCase

    data = [
        ({k: float(v) for k, v in x.items()}, float(y))
        for x, y in datasets.synth.Friedman(seed=2).take(800)
    ]
    spec = UseCase.model_validate(
        {
            "name": "friedman",
            "task": "regression",
            "fields": {str(k): {"type": "float"} for k in data[0][0]},
            "features": [{"kind": "passthrough", "field": str(k)} for k in data[0][0]],
        }
    )
    learner = OnlineLearner(spec)
    for x, y in data:
        learner.learn_one(x, y)
    for name, metric in (("mae", metrics.MAE()), ("rmse", metrics.RMSE()), ("r2", metrics.R2())):
        model = preprocessing.StandardScaler() | linear_model.LinearRegression()
        assert (
            learner.metrics.values()[name]
            == evaluate.progressive_val_score(data, model, metric).get()
        )
