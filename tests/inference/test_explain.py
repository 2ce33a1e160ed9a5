"""Explanations add up: expected value + contributions == the model's own score, per method.

Real models only: the batch trainer's MLP, linear and gradient-boosted tree
families (torch, scikit-learn, explained by captum and shap), river's Hoeffding
tree and logistic regression. The score each explanation is
checked against is computed from the model's public answers (its probabilities
or prediction), not taken from the explanation.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from river import compose, linear_model, preprocessing, tree
from river.datasets import synth

from schemas.events import Window
from services.batch_trainer.pipeline import train_candidate
from services.common.models.linear_model import LinearModel
from services.common.models.river_model import RiverModel
from services.common.models.torch_model import TorchModel
from services.inference.explain import TOLERANCE, explain
from tests.batch_trainer.conftest import (
    AGRAWAL_FEATURES,
    agrawal_frame,
    binary_spec,
    friedman_frame,
    multiclass_spec,
    rbf_frame,
    regression_spec,
)


def _batch_models(spec: Any, frame: Any) -> dict[str, Any]:
    outcome = train_candidate(spec, frame, Window())
    return {m.flavor: m for m in [outcome.model, *outcome.losers.values()]}


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    tiny = {"tuning": {"trials": 0}, "max_epochs": 4, "contenders": ["hist_gradient_boosting"]}
    found = {}
    for name, (spec, frame) in {
        "binary": (binary_spec(**tiny), agrawal_frame(300)),
        "multiclass": (multiclass_spec(**tiny), rbf_frame(300)),
        "regression": (regression_spec(**tiny), friedman_frame(300)),
    }.items():
        for flavor, model in _batch_models(spec, frame).items():
            found[f"{flavor}-{name}"] = (model, frame[spec.feature_names()])
    stream = list(itertools.islice(synth.Agrawal(classification_function=2, seed=3), 600))
    rows = [{k: float(x[k]) for k in AGRAWAL_FEATURES} for x, _ in stream]
    for name, estimator in {
        "hoeffding": tree.HoeffdingTreeClassifier(grace_period=50),
        "logistic": compose.Pipeline(
            preprocessing.StandardScaler(), linear_model.LogisticRegression()
        ),
    }.items():
        river = RiverModel(estimator, "classification", classes=[0, 1], positive=1)
        for row, (_, y) in zip(rows, stream, strict=True):
            river.learn_one(row, int(y))
        found[f"river-{name}"] = (river, None)
    return found


def own_score(model: Any, row: dict[str, float], answer: dict[str, Any]) -> float:
    """The score the explanation claims, worked out from the model's public answers."""
    if answer["units"] == "target":
        return float(model.predict([row])[0])
    proba = model.predict_proba([row])[0]
    if answer["units"] == "probability":
        return float(proba[answer["class"]])
    if answer["units"] == "log_odds":
        negative = next(c for c in model.classes if c != answer["class"])
        return math.log(proba[answer["class"]] / proba[negative])
    # a logit is defined up to a shared constant: compare log-probability differences instead
    assert answer["units"] == "logit"
    return float("nan")


CASES = ["linear-binary", "linear-multiclass", "linear-regression", "torch-binary",
         "torch-multiclass", "torch-regression", "tree-binary", "tree-multiclass",
         "tree-regression", "river-hoeffding", "river-logistic"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_contributions_add_up_to_the_score(models: dict[str, Any], case: str, data: Any) -> None:
    if case not in models:
        pytest.skip(f"{case}: that family was not trained by this split")
    model, frame = models[case]
    names = list(getattr(model, "feature_names", AGRAWAL_FEATURES))
    if frame is not None:
        base = frame.iloc[data.draw(st.integers(0, len(frame) - 1))].to_dict()
    else:
        base = {n: 50_000.0 for n in names}
    jitter = data.draw(st.lists(st.floats(-2, 2), min_size=len(names), max_size=len(names)))
    row = {n: float(base[n]) * (1 + 0.1 * j) for n, j in zip(names, jitter, strict=True)}
    reference = {n: float(base[n]) for n in names}
    answer = explain(model, [row], positive=1, reference=reference)[0].as_dict()

    total = answer["expected_value"] + math.fsum(answer["contributions"].values())
    tolerance = answer["tolerance"] * max(1.0, abs(answer["score"]))
    assert abs(total - answer["score"]) <= tolerance, answer
    assert set(answer["contributions"]) == set(names)
    expected_score = own_score(model, row, answer)
    if not math.isnan(expected_score):
        assert answer["score"] == pytest.approx(expected_score, abs=1e-4, rel=1e-4)


def test_methods_per_family(models: dict[str, Any]) -> None:
    methods = {
        case: explain(model, [_first_row(model, frame)], positive=1)[0].method
        for case, (model, frame) in models.items()
    }
    for case, method in methods.items():
        family = case.split("-")[0]
        assert method == {"linear": "linear_exact", "torch": "integrated_gradients",
                          "tree": "tree_shap", "river": "baseline_shapley"}[family]  # fmt: skip
    assert TOLERANCE["integrated_gradients"] > TOLERANCE["linear_exact"]


def test_a_linear_explanation_is_the_weights_times_the_standardized_input(
    models: dict[str, Any],
) -> None:
    model, frame = models["linear-regression"]
    assert isinstance(model, LinearModel)
    row = _first_row(model, frame)
    answer = explain(model, [row])[0]
    z = model.transform(np.array([[row[n] for n in model.feature_names]]))[0]
    for j, name in enumerate(model.feature_names):
        assert answer.contributions[name] == pytest.approx(
            model.weights[0][j] * z[j] * model.target_scale
        )


def test_a_feature_at_its_reference_value_contributes_nothing(models: dict[str, Any]) -> None:
    model, _ = models["river-hoeffding"]
    row = {n: 40_000.0 + i for i, n in enumerate(AGRAWAL_FEATURES)}
    reference = {**row, "salary": 120_000.0}  # only salary differs
    answer = explain(model, [row], positive=1, reference=reference)[0]
    assert {k for k, v in answer.contributions.items() if v != 0} <= {"salary"}
    assert answer.contributions["salary"] == pytest.approx(answer.score - answer.expected_value)


def _first_row(model: Any, frame: Any) -> dict[str, float]:
    if frame is None:
        return {n: 50_000.0 for n in AGRAWAL_FEATURES}
    return {k: float(v) for k, v in frame.iloc[0].to_dict().items()}


def test_torch_models_are_explained_by_their_network(models: dict[str, Any]) -> None:
    model, frame = models["torch-binary"]
    assert isinstance(model, TorchModel)
    answer = explain(model, [_first_row(model, frame)], positive=1)[0]
    logits = model.forward_array(
        np.array([[_first_row(model, frame)[n] for n in model.feature_names]])
    )
    assert answer.score == pytest.approx(float(logits[0, 1] - logits[0, 0]), abs=1e-5)


def test_a_tree_explanation_is_exact_and_its_negative_class_is_the_mirror(
    models: dict[str, Any],
) -> None:
    model, frame = models["tree-binary"]
    rows = [{k: float(v) for k, v in r.items()} for r in frame.head(20).to_dict("records")]
    for_positive = explain(model, rows, positive=1)
    for_negative = explain(model, rows, positive=0)
    for pos, neg, row in zip(for_positive, for_negative, rows, strict=True):
        assert abs(pos.gap) < 1e-9 and pos.units == "log_odds" and pos.explained_class == 1
        assert neg.score == pytest.approx(-pos.score) and neg.explained_class == 0
        proba = model.predict_proba([row])[0]
        assert pos.score == pytest.approx(math.log(proba[1] / proba[0]), abs=1e-9)
    # the contributions differ across rows: the trees use more than one feature
    spread = np.array([list(a.contributions.values()) for a in for_positive]).std(axis=0)
    assert (spread > 0).sum() >= 2


def test_a_rows_feature_orders_are_the_same_in_every_process() -> None:
    """Two processes with different string hashes (two replicas, or one after a restart)
    draw the same feature orders for a row, so they give the same explanation."""
    import subprocess
    import sys

    script = (
        "from services.inference.explain import permutation_seed;"
        "print(permutation_seed({'income': 4.5, 'age': 31.0, 'purpose_car': 1.0}))"
    )
    seeds = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for hash_seed in (1, 2, 3)
    }
    assert len(seeds) == 1, seeds
