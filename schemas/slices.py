"""Fairness slices: what a use case declares, and what candidates and decisions carry.

A slice groups rows by one categorical value, a feature (``age_bin``) or a
one-hot encoded category field (``elevel``), so a model can be judged on each
group of people as well as on average. Candidates carry the primary metric
per slice (:class:`SliceScore`), gate decisions both models' per slice
(:class:`SliceComparison`). ``promotion.backtest`` (:class:`BacktestPolicy`)
makes the registry back-test candidates; the back-test event itself is in
:mod:`schemas.backtests`.

>>> SliceSpec(name="age_band", feature="age_bin").min_rows
30
>>> SliceComparison(rows=40, candidate=0.7, champion=0.75).model_dump()
{'rows': 40, 'candidate': 0.7, 'champion': 0.75}
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from schemas.strict import Strict

# as schemas.events.FiniteFloat (events import this module, so not from there)
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class SliceSpec(Strict):
    """One slice: rows grouped by the value of ``feature`` (a feature or a one-hot field)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    feature: str = Field(min_length=1, description="a feature name or a one-hot category field")
    min_rows: int = Field(
        default=30, gt=0, description="a slice value with fewer rows is reported, not compared"
    )


class SliceScore(Strict):
    """One slice value's primary metric (None: undefined there, e.g. one class only)."""

    rows: int = Field(ge=0)
    value: FiniteFloat | None = None


class SliceComparison(Strict):
    """Candidate and champion on one slice value's rows."""

    rows: int = Field(ge=0)
    candidate: FiniteFloat | None = None
    champion: FiniteFloat | None = None


SliceScores = dict[str, dict[str, SliceScore]]
"""Slice name -> slice value (``age<40``) -> score."""
SliceComparisons = dict[str, dict[str, SliceComparison]]


class BacktestPolicy(Strict):
    """``promotion.backtest``: back-test every candidate against the champion before promoting.

    The window is the last ``window_hours`` of event time in the offline store
    (ending at its newest labelled row).
    """

    window_hours: float = Field(gt=0)
    must_not_lose: bool = True
