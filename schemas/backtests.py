"""The back-test event (``models.backtests``): two models replayed over the same stored rows.

``driftline backtest`` and the registry (``promotion.backtest``) publish one
per back-test: both models' primary metric overall and per stretch of event
time, how many rows the store held for the range asked, and where the
report (HTML and PNG) is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.events import FiniteFloat, SystemEvent, Window
from schemas.strict import Strict

Winner = Literal["model", "against", "tie", "undecided"]
"""Which side a back-test found better on the primary metric (undecided: undefined there)."""


class BacktestBucket(Strict):
    """One stretch of event time in a back-test: both models' primary metric on its rows."""

    start: datetime
    end: datetime
    rows: int = Field(ge=0)
    model: FiniteFloat | None = None
    against: FiniteFloat | None = None


class Backtest(SystemEvent):
    """A back-test's summary (``models.backtests``): two models replayed over the same rows."""

    event_type: Literal["backtest"] = "backtest"
    schema_version: Literal[1] = 1
    backtest_id: str = Field(min_length=1)
    requested_by: str = Field(description="cli or registry")
    model_name: str
    model_version: str
    against_name: str
    against_version: str
    against_role: str = Field(description="champion, or the version asked for")
    metric: str
    model_score: FiniteFloat | None = None
    against_score: FiniteFloat | None = None
    improvement: FiniteFloat | None = None
    winner: Winner
    evaluation: dict[str, str] = Field(
        default_factory=dict, description="per side: prequential (online) or scoring (batch)"
    )
    requested: Window = Field(description="the time range asked for")
    covered: Window = Field(description="what the store holds: first/last labelled event")
    rows: int = Field(ge=0, description="labelled rows replayed")
    rows_scored: int = Field(ge=0, description="rows both models were scored on")
    missing: str | None = Field(default=None, description="what the store no longer has")
    buckets: list[BacktestBucket] = Field(default_factory=list)
    report_html: str | None = None
    report_png: str | None = None
