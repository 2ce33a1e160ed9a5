"""The pure pipeline: determinism, no leakage, refusals, early stopping, class weights."""

from __future__ import annotations

import doctest
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import torch

from schemas.events import Window
from services.batch_trainer import data as data_module
from services.batch_trainer import split as split_module
from services.batch_trainer import train as train_module
from services.batch_trainer.data import prepare
from services.batch_trainer.errors import TrainingRefused
from services.batch_trainer.pipeline import make_split, train_candidate
from services.batch_trainer.train import HyperParams, fit_mlp
from services.common.errors import InvalidInput
from services.common.models.torch_model import Standardizer
from tests.batch_trainer.conftest import START, agrawal_frame, binary_spec, regression_spec

CPU = torch.device("cpu")


@pytest.mark.parametrize("module", [data_module, split_module, train_module])
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_same_data_and_seed_give_the_same_metrics() -> None:
    spec, frame = binary_spec(), agrawal_frame(260)
    first = train_candidate(spec, frame, Window())
    second = train_candidate(spec, frame.sample(frac=1.0, random_state=1), Window())
    assert first.report.metrics == second.report.metrics
    assert first.report.baseline_metrics == second.report.baseline_metrics
    assert first.report.val_loss == second.report.val_loss
    for name, tensor in first.model.module.state_dict().items():
        assert torch.equal(tensor, second.model.module.state_dict()[name])


def test_a_different_seed_gives_a_different_model() -> None:
    frame = agrawal_frame(260)
    first = train_candidate(binary_spec(seed=1), frame, Window())
    second = train_candidate(binary_spec(seed=2), frame, Window())
    assert first.report.val_loss != second.report.val_loss


def test_split_is_time_ordered_and_preprocessing_sees_the_training_part_only() -> None:
    spec = binary_spec()
    frame = agrawal_frame(300).sample(frac=1.0, random_state=3)  # arrival order is not time order
    frame.loc[frame.sample(30, random_state=4).index, "salary"] = np.nan
    outcome = train_candidate(spec, frame, Window())
    prepared = prepare(spec, frame, Window())
    split = make_split(spec, prepared)
    train_t, val_t, test_t = (prepared.timestamps[p] for p in (split.train, split.validation,
                                                                split.test))  # fmt: skip
    assert train_t.max() < val_t.min() and val_t.max() < test_t.min()
    assert split.sizes() == {"train": 210, "validation": 60, "test": 30}
    assert outcome.report.split["sizes"] == split.sizes()
    expected = Standardizer.fit(prepared.features[split.train])
    assert outcome.model.preprocessing == expected
    everything = Standardizer.fit(prepared.features)
    assert outcome.model.preprocessing.mean != everything.mean
    assert outcome.report.profile.missing_share["salary"] == pytest.approx(0.1)


def test_stratified_split_when_the_data_is_not_temporal() -> None:
    spec = binary_spec(split={"temporal": False})
    prepared = prepare(spec, agrawal_frame(300), Window())
    split = make_split(spec, prepared)
    shares = [prepared.target[p].mean() for p in (split.train, split.validation, split.test)]
    assert max(shares) - min(shares) < 0.05
    assert not set(split.train) & set(split.test)


def test_too_little_data_is_refused_with_a_reason() -> None:
    spec = binary_spec(min_rows=500)
    with pytest.raises(TrainingRefused, match=r"300 labelled rows in the window, 500 needed"):
        train_candidate(spec, agrawal_frame(300), Window())
    window = Window(start=START, end=START + timedelta(seconds=49))
    with pytest.raises(InvalidInput, match=r"50 labelled rows"):
        train_candidate(binary_spec(), agrawal_frame(300), window)


def test_one_class_and_missing_columns_are_refused() -> None:
    frame = agrawal_frame(200)
    with pytest.raises(TrainingRefused, match="only 1 class"):
        train_candidate(binary_spec(), frame.assign(label=1), Window())
    with pytest.raises(TrainingRefused, match=r"lacks columns \['loan'\]"):
        train_candidate(binary_spec(), frame.drop(columns="loan"), Window())
    unlabelled = frame.assign(label=[None] * 150 + [1] * 50)
    with pytest.raises(TrainingRefused, match="50 labelled rows"):
        train_candidate(binary_spec(), unlabelled, Window())


def test_the_window_and_row_limit_select_the_most_recent_rows() -> None:
    window = Window(end=START + timedelta(seconds=249), rows=150)
    prepared = prepare(binary_spec(), agrawal_frame(300), window)
    assert prepared.profile.rows == 150
    assert prepared.event_ids[0] == "e000100" and prepared.event_ids[-1] == "e000249"


def test_early_stopping_restores_the_best_epoch() -> None:
    rng = np.random.default_rng(0)
    x_train, x_val = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    y_train, y_val = rng.normal(size=40), rng.normal(size=40)  # noise: it can only overfit
    params = HyperParams(hidden_layers=[64, 64], dropout=0.0, learning_rate=0.01, batch_size=8,
                         max_epochs=40, patience=4, weight_decay=0.0)  # fmt: skip
    result = fit_mlp(x_train, y_train, x_val, y_val, task="regression", n_outputs=1,
                     params=params, seed=0, device=CPU)  # fmt: skip
    assert result.epochs_run < params.max_epochs  # stopped early
    assert result.best_epoch == int(np.argmin(result.val_loss)) + 1
    assert result.best_epoch < result.epochs_run
    with torch.no_grad():
        inputs = torch.as_tensor(x_val, dtype=torch.float32)
        targets = torch.as_tensor(y_val, dtype=torch.float32).reshape(-1, 1)
        restored = float(torch.nn.functional.mse_loss(result.module(inputs), targets))
    assert restored == pytest.approx(result.best_val_loss, rel=1e-6)
    assert restored < result.val_loss[-1]


def test_class_weights_counter_imbalance() -> None:
    frame = agrawal_frame(600)
    minority = frame[frame.label == 1].iloc[::6]
    imbalanced = pd.concat([frame[frame.label == 0], minority]).sort_values("event_timestamp")
    share = (imbalanced.label == 1).mean()
    assert share < 0.15
    rows = {"min_rows": 100, "tuning": {"trials": 0}, "max_epochs": 6}
    weighted = train_candidate(binary_spec(class_weights=True, **rows), imbalanced, Window())
    plain = train_candidate(binary_spec(class_weights=False, **rows), imbalanced, Window())
    x = imbalanced[weighted.model.feature_names].to_numpy(dtype=float)
    minority_share = {
        name: np.mean([p == 1 for p in outcome.model.predict_array(x)])
        for name, outcome in (("weighted", weighted), ("plain", plain))
    }
    assert minority_share["weighted"] > minority_share["plain"]
    assert minority_share["weighted"] > share / 2


def test_regression_end_to_end_and_cross_validation() -> None:
    from tests.batch_trainer.conftest import friedman_frame

    outcome = train_candidate(regression_spec(cv_folds=2), friedman_frame(300), Window())
    report = outcome.report
    assert set(report.metrics) == {"mae", "mse", "rmse", "r2"}
    assert set(report.baseline_metrics) == {"mae", "mse", "rmse", "r2"}
    assert report.confusion_matrix is None and report.baseline_name == "linear_regression"
    assert report.cv is not None and report.cv["folds"] == 2 and len(report.cv["per_fold"]) == 2
    assert report.cv["scheme"] == "expanding_window"
    assert len(report.train_loss) == len(report.val_loss) >= report.best_epoch >= 1
    assert len(report.trials) == 2 and report.trials[0]["params"]["hidden_layers"] == [16, 8]
