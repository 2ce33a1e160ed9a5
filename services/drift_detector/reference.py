"""The reference: the training data of the current champion, found through its lineage.

The champion of a use case is what the promotion history on
``models.promotions`` says, folded by the one fold every reader uses
(:class:`~services.common.promotions.history.PromotionHistory`); its
:class:`~schemas.events.ModelCandidate`
(on ``models.candidates``, matched by model name and version) carries the
``data_window`` it was trained on, and the reference rows are that window's
training data from the Feast offline store, sampled to ``reference_rows``.

The loader is injectable (:data:`ReferenceSource`): the service uses
:func:`feast_reference`; tests pass a function that returns a frame.

>>> from schemas.events import Promotion
>>> lineage = Lineage()
>>> lineage.offer_promotion(Promotion(usecase="credit", action="canary", model_name="credit",
...                                   model_version="3", reason="gate passed"))
False
>>> lineage.offer_promotion(Promotion(usecase="credit", action="promote", model_name="credit",
...                                   model_version="3", reason="canary won"))
True
>>> lineage.champion("credit")
('credit', '3')
>>> lineage.offer_promotion(Promotion(usecase="credit", action="rollback", model_name="credit",
...                                   model_version="3", reason="a trial ended"))
False
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from schemas.events import ModelCandidate, Promotion
from schemas.usecase import UseCase
from services.common.promotions.history import PromotionHistory
from services.drift_detector.errors import ReferenceUnavailable

logger = logging.getLogger(__name__)

ReferenceSource = Callable[[UseCase, ModelCandidate], pd.DataFrame]
"""``(spec, champion's candidate) -> its training rows`` (one column per feature)."""

SAMPLE_SEED = 0


def feast_reference(spec: UseCase, candidate: ModelCandidate) -> pd.DataFrame:
    """The champion's training rows from the Feast offline store (imports feast: slow)."""
    from services.common.featurestore import training_data

    return training_data(spec, candidate.data_window)


def reference_frame(
    frame: pd.DataFrame, features: Sequence[str], rows: int, min_rows: int, usecase: str
) -> pd.DataFrame:
    """The reference columns, sampled (seeded, order kept) down to ``rows``.

    >>> frame = pd.DataFrame({"x": range(10), "label": 0})
    >>> list(reference_frame(frame, ["x"], 4, 2, "uc")["x"])
    [2, 4, 8, 9]
    >>> reference_frame(frame, ["x"], 4, 20, "uc")
    Traceback (most recent call last):
    ...
    services.drift_detector.errors.ReferenceUnavailable: uc: no reference: 10 rows < min_rows 20
    """
    if len(frame) < min_rows:
        raise ReferenceUnavailable(usecase, f"{len(frame)} rows < min_rows {min_rows}")
    columns = [name for name in features if name in frame.columns]
    if not columns:
        raise ReferenceUnavailable(usecase, f"none of the features {list(features)} in the data")
    chosen = frame[columns]
    if len(chosen) > rows:
        chosen = chosen.sample(n=rows, random_state=SAMPLE_SEED).sort_index()
    return chosen.apply(pd.to_numeric, errors="coerce").reset_index(drop=True)


@dataclass
class Lineage:
    """Candidates and the champion of each use case, from the two model topics."""

    candidates: dict[tuple[str, str, str], ModelCandidate] = field(default_factory=dict)
    history: PromotionHistory = field(default_factory=PromotionHistory)

    def offer_candidate(self, candidate: ModelCandidate) -> None:
        key = (candidate.usecase, candidate.model_name, candidate.model_version)
        self.candidates[key] = candidate

    def offer_promotion(self, promotion: Promotion) -> bool:
        """Fold a promotion in; True when it changes the use case's champion."""
        before = self.champion(promotion.usecase)
        self.history.apply(promotion)
        return self.champion(promotion.usecase) != before

    def champion(self, usecase: str) -> tuple[str, str] | None:
        """The champion's ``(model_name, model_version)``, as the promotion history says."""
        ref = self.history.get(usecase).champion
        return (ref.name, ref.version) if ref is not None else None

    def champion_candidate(self, usecase: str) -> ModelCandidate | None:
        """The candidate event of the current champion, if it was seen."""
        champion = self.champion(usecase)
        if champion is None:
            return None
        return self.candidates.get((usecase, *champion))
