"""What a back-test found: both sides, the rows they stood on, the metrics, what the store held.

:mod:`.backtest` computes it and :mod:`.backtest_report` draws it; both read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from schemas.backtests import BacktestBucket, Winner
from schemas.events import Window
from schemas.usecase import LOWER_IS_BETTER, UseCase
from services.common.models import Model
from services.common.promotions.history import ModelRef


@dataclass(frozen=True)
class Side:
    """One of the two models of a back-test."""

    ref: ModelRef
    model: Model
    role: str  # "candidate", "champion", or the version asked for


@dataclass(frozen=True)
class BacktestOutcome:
    """Both sides' answers on the same rows, the metrics, and what the store held."""

    spec: UseCase
    model: Side
    against: Side
    requested: Window
    covered: Window
    rows: pd.DataFrame
    scored: int
    model_score: float | None
    against_score: float | None
    buckets: list[BacktestBucket]
    evaluation: dict[str, str]
    missing: str | None

    @property
    def improvement(self) -> float | None:
        if self.model_score is None or self.against_score is None:
            return None
        gain = self.model_score - self.against_score
        return -gain if self.spec.primary_metric in LOWER_IS_BETTER else gain

    @property
    def winner(self) -> Winner:
        gain = self.improvement
        if gain is None:
            return "undecided"
        return "model" if gain > 0 else "against" if gain < 0 else "tie"
