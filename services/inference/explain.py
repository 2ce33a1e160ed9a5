"""Per-feature contributions to a prediction's score: ``expected_value + sum == score``.

Each method answers in the units of the score it explains (``units``):
``log_odds`` of the positive class (binary batch models), ``logit`` of the
predicted class (multiclass batch models), ``probability`` of the positive
or predicted class (river classifiers), ``target`` (regressors).

- ``linear_exact`` (linear family): ``weight * standardized input`` per
  feature; the expected value is the intercept, the score of the training
  means. Exact (to float rounding).
- ``tree_shap`` (the gradient-boosted trees, shap's ``TreeExplainer``):
  exact Shapley values of the trees' raw score (path-dependent TreeSHAP,
  Lundberg et al. 2020); the expected value is the trees' mean score over
  the training rows (weighted by each node's training cover). Exact up to
  float rounding, so its stated tolerance is 1e-6 (about 1e-14 seen).
- ``integrated_gradients`` (the MLP, captum): the path integral of the
  gradient from the training means (standardized input 0, the expected
  value's row) to the input, 32 Gauss-Legendre steps. The sum misses the
  score by the integral's quadrature error, reported per item as ``gap``.
- ``baseline_shapley`` (river models; no library explains river's trees): the
  Shapley values of the game that moves features one at a time from a
  reference row (every field at the value ingestion imputes it with: its
  median or most frequent value) to the input, estimated over one seeded
  permutation and its reverse (Sundararajan & Najmi 2020, "The many
  Shapley values for model explanation"). Each order's steps add up to
  ``score - expected_value`` exactly, so their average does too; an order
  and its reverse put every pair of features both ways round, so the
  estimate is the exact Shapley value when the score is a sum of terms in
  one or two features, and an estimate otherwise. Features equal to the
  reference contribute 0 and cost no model call. A request's rows (every item's
  two ends and steps) are scored in one model call, a Hoeffding tree's from its leaves' arrays.

captum is imported on the first MLP explanation only, shap on the first tree one
(its import, with numba's, takes a few seconds).
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.models.linear_model import LinearModel
from services.common.models.protocol import FeatureDict, Model
from services.common.models.tabular import rows_to_matrix
from services.common.models.tree_model import TreeModel

IG_STEPS = 32  # the gap stays well under the tolerance; captum costs ~0.3 ms a step here
PERMUTATIONS = 1  # with its reverse: 2 orders per item, 2 model calls per moving feature
TOLERANCE = {
    "linear_exact": 1e-9,
    "tree_shap": 1e-6,
    "integrated_gradients": 1e-2,
    "baseline_shapley": 1e-9,
}


@dataclass(frozen=True)
class Explanation:
    """One item's contributions; ``expected_value + sum(contributions) == score`` within ``gap``."""

    method: str
    units: str
    explained_class: Any
    expected_value: float
    score: float
    contributions: dict[str, float]

    @property
    def gap(self) -> float:
        return self.score - self.expected_value - math.fsum(self.contributions.values())

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(self.contributions.items(), key=lambda kv: -abs(kv[1]))
        return {
            "method": self.method,
            "units": self.units,
            "class": _plain(self.explained_class),
            "expected_value": self.expected_value,
            "score": self.score,
            "gap": self.gap,
            "tolerance": TOLERANCE[self.method],
            "contributions": dict(ordered),
        }


def _plain(value: Any) -> Any:
    """A class value as JSON: numpy scalars become Python ones."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, bool | int | float | str) else value


def explain(
    model: Model,
    rows: Sequence[FeatureDict],
    *,
    positive: Any = None,
    reference: FeatureDict | None = None,
) -> list[Explanation]:
    """One explanation per row, by the method that fits the model (see the module's doc)."""
    if isinstance(model, LinearModel):
        return _linear(model, rows)
    if isinstance(model, TreeModel):
        return _tree(model, rows, positive)
    if model.flavor == "torch":
        return _integrated_gradients(model, rows, positive)
    return _baseline_shapley(model, rows, positive, reference or {})


def _linear(model: LinearModel, rows: Sequence[FeatureDict]) -> list[Explanation]:
    matrix = rows_to_matrix(rows, model.feature_names)
    contributions, expected, units = model.explain_array(matrix)
    multiclass = units[:1] == ["logit"]  # only then is the class the winner's
    winners = model.forward_array(matrix).argmax(axis=1).tolist() if multiclass else None
    answers = []
    for i, terms in enumerate(contributions.tolist()):
        found = dict(zip(model.feature_names, terms, strict=True))
        winner = winners[i] if winners is not None else 0
        answers.append(
            Explanation(
                "linear_exact",
                units[i],
                _class_of(model, units[i], winner),
                float(expected[i]),
                float(expected[i]) + math.fsum(terms),
                found,
            )
        )
    return answers


def _tree(model: TreeModel, rows: Sequence[FeatureDict], positive: Any) -> list[Explanation]:
    matrix = rows_to_matrix(rows, model.feature_names)
    contributions, expected, scores, units, explained = model.explain_array(matrix, positive)
    return [
        Explanation(
            "tree_shap",
            units[i],
            explained[i],
            float(expected[i]),
            float(scores[i]),
            dict(zip(model.feature_names, map(float, contributions[i]), strict=True)),
        )
        for i in range(len(rows))
    ]


def _class_of(model: Any, units: str, winner: int) -> Any:
    if model.classes is None:
        return None
    return model.classes[-1] if units == "log_odds" else model.classes[winner]


def _integrated_gradients(
    model: Any, rows: Sequence[FeatureDict], positive: Any
) -> list[Explanation]:
    import torch
    from captum.attr import IntegratedGradients

    module = model.module
    device = model.device
    inputs = torch.as_tensor(
        model.transform(rows_to_matrix(rows, model.feature_names)),
        dtype=torch.float32,
        device=device,
    )
    classes = model.classes
    binary = classes is not None and len(classes) == 2
    with torch.no_grad():
        outputs = module(inputs)
    target = None
    if model.task == "regression":
        units = "target"
        scale, shift = float(model.target_scale), float(model.target_mean)

        def score(x: torch.Tensor) -> torch.Tensor:
            result: torch.Tensor = module(x)[:, 0] * scale
            return result

        explained: list[Any] = [None] * len(rows)
    elif binary:
        assert classes is not None
        pos = classes.index(positive) if positive in classes else 1
        neg = 1 - pos
        units, shift = "log_odds", 0.0

        def score(x: torch.Tensor) -> torch.Tensor:
            out = module(x)
            result: torch.Tensor = out[:, pos] - out[:, neg]
            return result

        explained = [classes[pos]] * len(rows)
    else:
        assert classes is not None
        winners = outputs.argmax(dim=1)
        units, shift, target = "logit", 0.0, winners

        def score(x: torch.Tensor) -> torch.Tensor:
            result: torch.Tensor = module(x)
            return result

        explained = [classes[int(k)] for k in winners]
    baseline = torch.zeros_like(inputs)
    # captum repeats the rows once per step and ``target`` with them, so one forward call
    attributions = IntegratedGradients(score).attribute(
        inputs, baselines=baseline, target=target, n_steps=IG_STEPS, method="gausslegendre"
    )
    with torch.no_grad():
        scores = _pick(score(inputs), target).cpu().numpy().astype(np.float64) + shift
        expected = _pick(score(baseline), target).cpu().numpy().astype(np.float64) + shift
    values = attributions.detach().cpu().numpy().astype(np.float64)
    return [
        Explanation(
            "integrated_gradients",
            units,
            explained[i],
            float(expected[i]),
            float(scores[i]),
            dict(zip(model.feature_names, map(float, values[i]), strict=True)),
        )
        for i in range(len(rows))
    ]


def _pick(outputs: Any, target: Any) -> Any:
    """Each row's explained output: the column ``target`` names, or the one output."""
    if target is None:
        return outputs
    return outputs.gather(1, target.reshape(-1, 1))[:, 0]


def permutation_seed(row: FeatureDict) -> int:
    """The seed of a row's feature orders: a digest of its names and float64 values (not their
    repr: slower), the same in every process (``hash`` of text is not: replicas would differ)."""
    names = sorted(row)
    values = np.array([float(row[name]) for name in names]).tobytes()
    return zlib.crc32("\0".join(names).encode() + values)


def _baseline_shapley(
    model: Model, rows: Sequence[FeatureDict], positive: Any, reference: FeatureDict
) -> list[Explanation]:
    """Every item's game at once: the rows of all its orders are scored in one model call."""
    if not rows:
        return []
    names = list(rows[0])
    if any(list(row) != names for row in rows[1:]):  # other fields: a call per item
        return [_baseline_shapley(model, [row], positive, reference)[0] for row in rows]
    start = np.array([float(reference.get(name, 0.0)) for name in names])
    inputs = np.array([[float(row[name]) for name in names] for row in rows]).reshape(len(rows), -1)
    games = [_orders(row, start, x) for row, x in zip(rows, inputs, strict=True)]
    blocks = [start[None, :], inputs]  # the reference row, each item's input, each order's steps
    for orders, x in zip(games, inputs, strict=True):
        for order in orders:
            rank = np.full(len(names), len(order))
            rank[order] = np.arange(len(order))  # step k: the order's first k + 1 at the input
            blocks.append(np.where(rank < np.arange(1, len(order))[:, None], x, start))
    classes, scores = _river_scores(model, names, np.concatenate(blocks))
    units = "target" if classes is None else "probability"
    answers = []
    at = len(rows) + 1
    for i, orders in enumerate(games):
        target, column = _target(model, classes, scores[1 + i], positive)
        values = scores[:, column].tolist()
        expected, scored = values[0], values[1 + i]
        totals = [0.0] * len(names)
        for order in orders:
            before = expected
            for j in order[:-1]:
                totals[j] += values[at] - before
                before = values[at]
                at += 1
            totals[order[-1]] += scored - before
        if orders:
            totals = [total / len(orders) for total in totals]
        contributions = dict(zip(names, totals, strict=True))
        answers.append(
            Explanation("baseline_shapley", units, target, expected, scored, contributions)
        )
    return answers


def _orders(row: FeatureDict, start: Any, x: Any) -> list[list[int]]:
    """A row's feature orders, as positions: one seeded permutation of the features that move
    (not at their reference value) and its reverse, per ``PERMUTATIONS``."""
    moving = np.flatnonzero(x != start).tolist()
    rng = random.Random(permutation_seed(row))
    orders: list[list[int]] = []
    for _ in range(PERMUTATIONS if moving else 0):
        order = rng.sample(moving, len(moving))  # sample draws positions: names or not, alike
        orders += [order, order[::-1]]
    return orders


def _target(model: Any, classes: list[Any] | None, scored: Any, positive: Any) -> tuple[Any, int]:
    """The class an item's explanation is about and its column: the positive class of a
    binary classifier, the input's most probable class otherwise (none: a regressor)."""
    if classes is None:
        return None, 0
    if len(model.classes or ()) == 2:
        chosen = positive if positive is not None else getattr(model, "positive", None)
        target = chosen if chosen is not None else model.classes[-1]
    else:
        target = classes[int(np.argmax(scored[: len(classes)]))]
    return target, classes.index(target) if target in classes else len(classes)


def _river_scores(model: Any, names: list[str], matrix: Any) -> tuple[list[Any] | None, Any]:
    """``(classes, scores)`` of a river model's rows, in one model call: the probability of
    each class a column (one more column, all 0.0, for a class the model does not name),
    or a regressor's prediction in one column (``classes`` None)."""
    if model.task != "regression":
        found = _table_scores(model, names, matrix)
        if found is not None:
            return found
    rows = [dict(zip(names, row, strict=True)) for row in matrix.tolist()]
    if model.task == "regression":
        return None, np.array(model.predict(rows), dtype=np.float64).reshape(-1, 1)
    both = getattr(model, "predict_with_proba", None)  # a Hoeffding tree's fast path
    probas: list[dict[Any, float]] = both(rows)[1] if both else model.predict_proba(rows)
    classes = list(dict.fromkeys(c for p in probas for c in p))
    return classes, np.array([[p.get(c, 0.0) for c in classes] + [0.0] for p in probas])


def _table_scores(model: Any, names: list[str], matrix: Any) -> tuple[list[Any], Any] | None:
    """:func:`_river_scores` of a Hoeffding tree whose rows all reach naive-Bayes leaves with
    array tables (:class:`~services.common.models.river_model.LeafTable`), from those arrays
    in a few numpy calls (no row as a dict but for a branch's test); None for another model.

    The votes are river's (:meth:`LeafTable.votes`, the same floats); river's log-sum-exp
    in numpy (within a few ulps of ``math``'s)."""
    from services.common.models.river_tables import table_leaves

    groups = table_leaves(getattr(model, "estimator", None), names, matrix)
    if groups is None:
        return None
    river_classes = sorted(model.estimator.classes)
    if model.binary:  # river's True is the use case's positive class
        classes, column = [model.negative, model.positive], {True: 1}
    else:
        classes = list(model.classes or river_classes)
        column = {c: classes.index(c) for c in river_classes if c in classes}
    scores = np.zeros((len(matrix), len(classes) + 1))
    for table, indices in groups:
        values = (matrix if len(groups) == 1 else matrix[indices]).T  # attributes x rows
        votes = table.votes(names, values)
        top = votes.max(axis=1, keepdims=True)
        lse = top + np.log(np.exp(votes - top).sum(axis=1, keepdims=True))
        probabilities = np.exp(votes - lse)
        rows = slice(None) if len(groups) == 1 else indices
        for k, c in enumerate(table.classes):
            if c in column:
                scores[rows, column[c]] = probabilities[:, k]
    if model.binary:
        scores[:, 0] = 1.0 - scores[:, 1]
    return classes, scores
