"""Online contenders: other river models learning the same stream, and the snapshot's choice.

A use case may name ``models.online.contenders`` beside its ``model``. Each
contender is scored prequentially on every joined row (predict, then learn,
as the spec's model is) with its own :class:`PrequentialMetrics`. At a
snapshot, :func:`choose` picks the model to register by the same rule as the
batch trainer's families: the best rolling primary metric (the last
``rolling_window`` rows, so a model that fell behind after a drift loses)
wins, except that a simpler model within ``promotion.margin`` of the best wins
the tie. Simplicity: a linear model, then a Hoeffding tree, then an adaptive
random forest (:data:`SIMPLICITY`). Every model keeps learning whichever wins;
the concept-drift monitor watches the spec's model only.

>>> from schemas.usecase import UseCase
>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "classification", "label": {"classes": [0, 1]},
...     "fields": {"x": {"type": "float"}},
...     "features": [{"kind": "passthrough", "field": "x"}],
...     "models": {"online": {"contenders": ["hoeffding_tree"]}},
... })
>>> from services.online_trainer.learner import OnlineLearner
>>> learner = OnlineLearner(spec)
>>> [entrant.name for entrant in learner.entrants()]
['logistic_regression', 'hoeffding_tree']
>>> choose(spec, learner.entrants()).name  # no score yet: the spec's model
'logistic_regression'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.usecase import LOWER_IS_BETTER, UseCase
from services.common.models.river_model import RiverModel
from services.online_trainer.evaluation import PrequentialMetrics

SIMPLICITY = (
    "logistic_regression",
    "linear_regression",
    "hoeffding_tree",
    "hoeffding_tree_regressor",
    "adaptive_random_forest",
    "adaptive_random_forest_regressor",
)


@dataclass
class Entrant:
    """One river model of a use case, with its prequential metrics."""

    name: str
    model: RiverModel
    metrics: PrequentialMetrics


@dataclass(frozen=True)
class Choice:
    """The model a snapshot registers, why, and every entrant's rolling score."""

    entrant: Entrant
    reason: str
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.entrant.name


def choose(spec: UseCase, entrants: Sequence[Entrant]) -> Choice:
    """The entrant to snapshot: the best rolling primary metric, a simpler one within the margin.

    Entrants without a finite score yet are left out; with none scored, the
    spec's model is snapshotted.
    """
    metric, margin = spec.primary_metric, spec.promotion.margin
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    scores: dict[str, float] = {}
    for entrant in entrants:
        value = entrant.metrics.rolling_values().get(metric)
        if value is not None and math.isfinite(value):
            scores[entrant.name] = value
    if len(entrants) == 1 or not scores:
        return Choice(entrants[0], f"the spec's model (no rolling {metric} to compare)", scores)
    by_name = {entrant.name: entrant for entrant in entrants}
    best = max(scores, key=lambda name: (sign * scores[name], -_rank(name)))
    listed = ", ".join(f"{name}={value:.6g}" for name, value in sorted(scores.items()))
    for name in sorted(scores, key=_rank):
        gap = sign * (scores[best] - scores[name])
        if gap <= margin:
            if name == best:
                reason = f"{name} is best on rolling {metric} ({listed})"
            else:
                reason = (
                    f"{best} is best on rolling {metric} ({listed}), but {name} is within "
                    f"{gap:.6g} <= margin {margin}: the simpler model wins"
                )
            return Choice(by_name[name], reason, scores)
    raise AssertionError("the best entrant is within the margin of itself")


def _rank(name: str) -> int:
    return SIMPLICITY.index(name) if name in SIMPLICITY else len(SIMPLICITY)
