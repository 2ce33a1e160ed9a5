"""Models of what users write: labels. Raw events are checked against the
use case's own field list (see :mod:`schemas.usecase`), not a fixed class."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Label(BaseModel):
    """Ground truth for one raw event, published to ``<uc>.labels``.

    >>> label = {"event_id": "e1", "label": 1, "timestamp": "2026-01-01T00:00:00Z"}
    >>> Label.model_validate(label).label
    1
    """

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(min_length=1, max_length=200)
    label: int | float | str | bool
    timestamp: datetime
