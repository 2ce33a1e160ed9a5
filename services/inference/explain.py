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
  reference contribute 0 and cost no model call.

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
    winners = model.forward_array(matrix).argmax(axis=1)
    answers = []
    for i in range(len(rows)):
        terms = dict(zip(model.feature_names, map(float, contributions[i]), strict=True))
        answers.append(
            Explanation(
                "linear_exact",
                units[i],
                _class_of(model, units[i], int(winners[i])),
                float(expected[i]),
                float(expected[i]) + math.fsum(terms.values()),
                terms,
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
    """The seed of a row's feature orders: a digest of its items, the same in every process
    (``hash`` of text differs between processes, so replicas would answer differently)."""
    return zlib.crc32(repr(sorted(row.items())).encode())


def _baseline_shapley(
    model: Model, rows: Sequence[FeatureDict], positive: Any, reference: FeatureDict
) -> list[Explanation]:
    answers = []
    for row in rows:
        names = list(row)
        start = {name: float(reference.get(name, 0.0)) for name in names}
        values, units, explained = _river_score(model, positive)
        target = explained(row)
        expected, scored = values([start, row], target)
        moving = [name for name in names if float(row[name]) != start[name]]
        totals = dict.fromkeys(names, 0.0)
        rng = random.Random(permutation_seed(row))
        orders: list[list[str]] = []
        for _ in range(PERMUTATIONS if moving else 0):
            order = rng.sample(moving, len(moving))
            orders += [order, order[::-1]]
        steps: list[FeatureDict] = []  # every order's rows between the two ends, built first
        for order in orders:
            current = dict(start)
            for name in order[:-1]:
                current[name] = row[name]
                steps.append(dict(current))
        found = iter(values(steps, target))  # one model call for all of an item's steps
        for order in orders:
            before = expected
            for name in order:
                after = next(found) if name != order[-1] else scored
                totals[name] += after - before
                before = after
        contributions = {k: v / len(orders) for k, v in totals.items()} if orders else totals
        answers.append(
            Explanation("baseline_shapley", units, target, expected, scored, contributions)
        )
    return answers


def _river_score(model: Any, positive: Any) -> tuple[Any, str, Any]:
    """``(values(rows, class), units, class_to_explain(row))`` for a river model;
    ``values`` scores all its rows in one model call."""
    if model.task == "regression":

        def predictions(rows: Sequence[FeatureDict], _: Any) -> list[float]:
            return [float(y) for y in model.predict(rows)] if rows else []

        return predictions, "target", (lambda _: None)
    binary = model.classes is not None and len(model.classes) == 2
    chosen = positive if positive is not None else getattr(model, "positive", None)

    both = getattr(model, "predict_with_proba", None)  # a Hoeffding tree's fast path

    def probas(rows: Sequence[FeatureDict]) -> list[dict[Any, float]]:
        if not rows:
            return []
        found: list[dict[Any, float]] = both(rows)[1] if both else model.predict_proba(rows)
        return found

    def values(rows: Sequence[FeatureDict], target: Any) -> list[float]:
        return [float(p.get(target, 0.0)) for p in probas(rows)]

    if binary:
        positive_class = chosen if chosen is not None else model.classes[-1]
        return values, "probability", (lambda _: positive_class)

    def predicted(row: FeatureDict) -> Any:
        found = probas([row])[0]
        return max(found, key=found.__getitem__)

    return values, "probability", predicted
