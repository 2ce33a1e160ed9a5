"""A river explanation scores all of a request's game rows in one model call (for a Hoeffding
tree, straight from its leaves' naive-Bayes arrays); it must give what the game gives when
each of its rows is scored on its own by river (``predict_proba_one``), to 1e-9.

The row-by-row game here is written out independently of :mod:`services.inference.explain`
(only the seeded orders are shared): every step is a dict, scored alone.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np
import pytest
from river import compose, linear_model, preprocessing, tree
from river.datasets import synth

from services.common.models.river_model import RiverModel
from services.inference import explain as explaining
from services.inference.explain import PERMUTATIONS, explain, permutation_seed

MULTICLASS = [f"x{i}" for i in range(6)]
FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan"]


def _agrawal(count: int, seed: int, function: int = 2) -> list[tuple[dict[str, float], int]]:
    stream = itertools.islice(synth.Agrawal(classification_function=function, seed=seed), count)
    return [({k: float(x[k]) for k in FEATURES}, int(y)) for x, y in stream]


def _learned(model: RiverModel, data: list[tuple[dict[str, float], Any]]) -> RiverModel:
    for x, y in data:
        model.learn_one(x, y)
    return model


def _binary_tree(grace_period: int, data: list[tuple[dict[str, float], int]]) -> RiverModel:
    estimator = tree.HoeffdingTreeClassifier(grace_period=grace_period, delta=0.01)
    return _learned(RiverModel(estimator, "classification", [0, 1], positive=1), data)


@pytest.fixture(scope="module")
def models() -> dict[str, RiverModel]:
    data = _agrawal(3000, seed=3)
    rng = np.random.default_rng(4)
    thirds = [
        (dict(zip(MULTICLASS, map(float, x), strict=True)), int(x[0] > 0.33) + int(x[0] > 0.66))
        for x in rng.random((1500, len(MULTICLASS)))
    ]  # three classes by x0, the other features noise
    multiclass = tree.HoeffdingTreeClassifier(grace_period=5000)  # one leaf: naive Bayes
    return {
        "tree-one-leaf": _binary_tree(5000, data[:400]),
        "tree-branches": _binary_tree(50, _agrawal(3000, seed=3, function=0)),  # all NB leaves
        "tree-mixed-leaves": _binary_tree(50, data),  # some leaves vote their majority class
        "tree-multiclass": _learned(RiverModel(multiclass, "classification", [0, 1, 2]), thirds),
        "logistic": _learned(
            RiverModel(
                compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression()),
                "classification",
                [0, 1],
                positive=1,
            ),
            data[:600],
        ),
        "regressor": _learned(
            RiverModel(
                compose.Pipeline(preprocessing.StandardScaler(), linear_model.LinearRegression()),
                "regression",
            ),
            [(x, x["salary"] / 1000 + x["age"]) for x, _ in data[:600]],
        ),
    }


def _row_by_row(
    model: RiverModel, row: dict[str, float], reference: dict[str, float]
) -> tuple[float, float, dict[str, float]]:
    """``(expected, score, contributions)`` of the game, each step scored alone by river."""
    names = list(row)
    start = {name: float(reference.get(name, 0.0)) for name in names}
    if model.task == "regression":
        target = None
    elif model.binary:
        target = model.positive
    else:
        found = model.predict_proba([row])[0]
        target = max(found, key=found.__getitem__)

    def value(x: dict[str, float]) -> float:
        if target is None:
            return float(model.predict([x])[0])
        return float(model.predict_proba([x])[0].get(target, 0.0))

    moving = [name for name in names if float(row[name]) != start[name]]
    rng = random.Random(permutation_seed(row))
    orders: list[list[str]] = []
    for _ in range(PERMUTATIONS if moving else 0):
        order = rng.sample(moving, len(moving))
        orders += [order, order[::-1]]
    expected, score = value(start), value(row)
    totals = dict.fromkeys(names, 0.0)
    for order in orders:
        current, before = dict(start), expected
        for name in order:
            current[name] = row[name]
            after = value(current)
            totals[name] += after - before
            before = after
    return expected, score, {k: v / max(len(orders), 1) for k, v in totals.items()}


def _rows(case: str, count: int) -> tuple[list[dict[str, float]], dict[str, float]]:
    """``count`` rows to explain, one at the reference and one a feature off it; the reference."""
    if case == "tree-multiclass":
        names = MULTICLASS
        rng = np.random.default_rng(7)
        rows = [dict(zip(names, map(float, x), strict=True)) for x in rng.random((count, 6))]
        reference = dict.fromkeys(names, 0.5)
    else:
        names = FEATURES
        data = _agrawal(count + 50, seed=11)
        rows = [x for x, _ in data[:count]]
        reference = {n: float(np.median([x[n] for x, _ in data])) for n in names}
    rows.append(dict(reference))  # nothing moves: every contribution 0
    rows.append({**reference, names[0]: rows[0][names[0]]})  # one feature moves
    return rows, reference


@pytest.mark.parametrize(
    "case",
    [
        "tree-one-leaf",
        "tree-branches",
        "tree-mixed-leaves",
        "tree-multiclass",
        "logistic",
        "regressor",
    ],
)
def test_one_call_for_all_items_gives_the_row_by_row_attributions(
    models: dict[str, RiverModel], case: str
) -> None:
    model = models[case]
    rows, reference = _rows(case, 30)
    batched = explain(model, rows, positive=model.positive, reference=reference)
    assert len(batched) == len(rows)
    for row, answer in zip(rows, batched, strict=True):
        expected, score, contributions = _row_by_row(model, row, reference)
        assert abs(answer.expected_value - expected) <= 1e-9, (case, row)
        assert abs(answer.score - score) <= 1e-9, (case, row)
        assert answer.contributions.keys() == contributions.keys()
        for name, value in contributions.items():
            assert abs(answer.contributions[name] - value) <= 1e-9, (case, name, row)
        assert abs(answer.gap) <= 1e-9
    assert all(v == 0.0 for v in batched[-2].contributions.values())
    spread = np.array([list(a.contributions.values()) for a in batched[:-2]]).std(axis=0)
    assert (spread > 0).any()  # the rows are explained apart, not all alike


def test_the_hoeffding_trees_take_the_leaf_table_path(models: dict[str, RiverModel]) -> None:
    """The trees here are scored from their leaves' arrays (else the test above would only
    check the one-call dict path for them), and the tree with branches has more than a leaf."""
    assert models["tree-branches"].estimator.n_leaves > 1
    assert models["tree-one-leaf"].estimator.n_leaves == 1
    for case in ("tree-one-leaf", "tree-branches", "tree-multiclass"):
        model = models[case]
        rows, _ = _rows(case, 5)
        names = list(rows[0])
        matrix = np.array([[row[n] for n in names] for row in rows])
        assert explaining._table_scores(model, names, matrix) is not None, case
    for case in ("tree-mixed-leaves", "logistic"):  # the dict path
        rows, _ = _rows(case, 30)
        matrix = np.array([[row[n] for n in FEATURES] for row in rows])
        assert explaining._table_scores(models[case], FEATURES, matrix) is None, case
