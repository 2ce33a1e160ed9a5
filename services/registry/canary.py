"""A live trial: the challenger's and the champion's predictions joined with late labels.

The inference service logs every answer on ``<uc>.predictions`` with its
``variant`` (``champion``, ``challenger`` for a canary, ``shadow``) and the
``source_event_id`` of the input; ground truth arrives later on
``<uc>.labels`` under the same event id. :class:`LiveTrial` joins the two in
either order, one shared :class:`~services.common.join.KeyedJoin` per side
(each half waits, bounded, for the other; in shadow mode both sides answer
the same event, so each side's join gets every label), keeps the joined rows
per side, and is :meth:`~LiveTrial.ready` once the challenger has
``canary_min_count`` labeled predictions and both sides can be scored.

>>> from datetime import UTC, datetime
>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "regression",
...     "fields": {"x": {"type": "float"}}, "features": [{"kind": "passthrough", "field": "x"}],
...     "promotion": {"mode": "shadow", "canary_min_count": 2},
... })
>>> start = datetime(2026, 1, 1, tzinfo=UTC)
>>> shadow = Trial("shadow", ModelRef("toy", "2"), 0.0, start, "p")
>>> trial = LiveTrial(spec, ModelRef("toy", "1"), shadow)
>>> def answer(event, variant, version, value):
...     return Prediction(usecase="toy", source_event_id=event, entity_id="c", model_name="toy",
...                       model_version=version, variant=variant, prediction=value, latency_ms=1,
...                       occurred_at=start)
>>> for event, truth in (("e1", 1.0), ("e2", 2.0)):
...     trial.add_prediction(answer(event, "champion", "1", truth + 0.5))
...     trial.add_label(event, truth)
...     trial.add_prediction(answer(event, "shadow", "2", truth + 0.1))
>>> trial.counts(), trial.ready()
({'champion': 2, 'challenger': 2}, True)
>>> [round(s, 3) for s in trial.scores()]
[0.1, 0.5]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.events import Prediction
from schemas.usecase import UseCase
from services.common.join import KeyedJoin
from services.common.promotions.history import ModelRef, Trial
from services.registry.scoring import score

logger = logging.getLogger(__name__)

Side = Literal["champion", "challenger"]


@dataclass
class _Rows:
    truth: list[Any] = field(default_factory=list)
    predicted: list[Any] = field(default_factory=list)
    proba: list[dict[str, float] | None] = field(default_factory=list)


class LiveTrial:
    """The running comparison of one use case's challenger with its champion."""

    def __init__(
        self, spec: UseCase, champion: ModelRef, trial: Trial, max_pending: int = 100_000
    ) -> None:
        self.spec = spec
        self.champion = champion
        self.trial = trial
        self.max_pending = max_pending
        self.rows: dict[Side, _Rows] = {"champion": _Rows(), "challenger": _Rows()}
        self.joins: dict[Side, KeyedJoin[Prediction, Any]] = {
            side: KeyedJoin(max_pending, event_kind="predictions") for side in self.rows
        }

    def side_of(self, prediction: Prediction) -> Side | None:
        """Which side of the trial a prediction belongs to, if any."""
        if prediction.occurred_at < self.trial.started_at:
            return None  # answered before the trial began: not comparable
        identity = (prediction.model_name, prediction.model_version)
        challenger = self.trial.model
        if prediction.variant in ("challenger", "shadow") and identity == (
            challenger.name,
            challenger.version,
        ):
            return "challenger"
        if prediction.variant == "champion" and identity == (
            self.champion.name,
            self.champion.version,
        ):
            return "champion"
        return None

    def add_prediction(self, prediction: Prediction) -> None:
        side = self.side_of(prediction)
        event_id = prediction.source_event_id
        if side is None or not event_id:
            return
        joined = self.joins[side].offer_event(event_id, prediction)
        if joined is not None:
            self._add_row(side, joined.event, joined.label)

    def add_label(self, event_id: str, label: Any) -> None:
        for side, join in self.joins.items():
            joined = join.offer_label(event_id, label)
            if joined is not None:
                self._add_row(side, joined.event, label)

    def _add_row(self, side: Side, prediction: Prediction, label: Any) -> None:
        rows = self.rows[side]
        rows.truth.append(label)
        rows.predicted.append(prediction.prediction)
        rows.proba.append(prediction.probabilities)

    def counts(self) -> dict[str, int]:
        """Labeled predictions per side."""
        return {side: len(rows.truth) for side, rows in self.rows.items()}

    def metrics(self, side: Side) -> dict[str, float]:
        rows = self.rows[side]
        if not rows.truth:
            return {}
        has_proba = all(p is not None for p in rows.proba)
        return score(self.spec, rows.truth, rows.predicted, rows.proba if has_proba else None)

    def scores(self) -> tuple[float, float] | None:
        """(challenger, champion) on the primary metric, or None while either is undefined."""
        metric = self.spec.primary_metric
        challenger = self.metrics("challenger").get(metric)
        champion = self.metrics("champion").get(metric)
        if challenger is None or champion is None:
            return None
        return challenger, champion

    def ready(self) -> bool:
        """Enough labeled challenger predictions, and both sides scorable."""
        if self.counts()["challenger"] < self.spec.promotion.canary_min_count:
            return False
        return self.scores() is not None
