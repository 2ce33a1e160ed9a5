"""The shared metrics agree with scikit-learn's, binary and multi-class, undefined ones left out."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from sklearn import metrics as skm

from services.common import metrics
from services.common.metrics import classification_metrics, regression_metrics, scalar_metrics


def test_doctests() -> None:
    result = doctest.testmod(metrics)
    assert result.attempted > 0 and result.failed == 0


def test_binary_matches_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 200)
    score = np.clip(truth * 0.3 + rng.random(200) * 0.7, 0, 1)
    score[:10] = 0.5  # ties
    predicted = (score > 0.5).astype(int)
    proba = [{0: 1 - s, 1: s} for s in score]
    m = classification_metrics(list(truth), list(predicted), proba, classes=[0, 1], positive=1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted))
    assert m["precision"] == pytest.approx(skm.precision_score(truth, predicted))
    assert m["recall"] == pytest.approx(skm.recall_score(truth, predicted))
    assert m["f1"] == pytest.approx(skm.f1_score(truth, predicted))
    assert m["specificity"] == pytest.approx(skm.recall_score(truth, predicted, pos_label=0))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, score))
    assert m["log_loss"] == pytest.approx(skm.log_loss(truth, np.c_[1 - score, score]))
    assert m["confusion_matrix"] == skm.confusion_matrix(truth, predicted).tolist()


def test_multiclass_macro_matches_scikit_learn() -> None:
    rng = np.random.default_rng(5)
    classes = ["a", "b", "c"]
    raw = rng.random((150, 3))
    proba = raw / raw.sum(axis=1, keepdims=True)
    truth = np.array([classes[k] for k in rng.integers(0, 3, 150)])
    predicted = np.array([classes[k] for k in proba.argmax(axis=1)])
    m = classification_metrics(list(truth), list(predicted), proba, classes=classes)
    assert m["precision"] == pytest.approx(skm.precision_score(truth, predicted, average="macro"))
    assert m["recall"] == pytest.approx(skm.recall_score(truth, predicted, average="macro"))
    assert m["f1"] == pytest.approx(skm.f1_score(truth, predicted, average="macro"))
    expected_auc = skm.roc_auc_score(truth, proba, multi_class="ovr", labels=classes)
    assert m["roc_auc"] == pytest.approx(expected_auc)
    assert m["log_loss"] == pytest.approx(skm.log_loss(truth, proba, labels=classes))


def test_undefined_metrics_are_left_out() -> None:
    m = classification_metrics([1, 1], [1, 0], [{1: 0.9}, {1: 0.4}], classes=[0, 1], positive=1)
    assert "roc_auc" not in m  # one class present
    assert m["precision"] == 1.0 and m["specificity"] == 0.0  # zero division gives 0
    assert "r2" not in regression_metrics([2.0, 2.0], [1.0, 3.0])
    assert set(scalar_metrics(m)) == {"accuracy", "precision", "recall", "f1", "specificity",
                                      "log_loss"}  # fmt: skip


def test_regression_matches_scikit_learn() -> None:
    rng = np.random.default_rng(9)
    truth = rng.normal(size=100)
    guess = truth + rng.normal(scale=0.3, size=100)
    m = regression_metrics(list(truth), list(guess))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(truth, guess))
    assert m["mse"] == pytest.approx(skm.mean_squared_error(truth, guess))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(truth, guess)))
    assert m["r2"] == pytest.approx(skm.r2_score(truth, guess))
