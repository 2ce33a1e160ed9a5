"""Factories for the online trainer's tests: a use case over river's Agrawal stream."""

from __future__ import annotations

from typing import Any

import pytest
from river import datasets

from schemas.usecase import UseCase

AGRAWAL_FIELDS = (
    "salary",
    "commission",
    "age",
    "elevel",
    "car",
    "zipcode",
    "hvalue",
    "hyears",
    "loan",
)


def agrawal_spec(name: str = "agrawal", **online: Any) -> UseCase:
    """A binary use case whose features are Agrawal's nine attributes."""
    return UseCase.model_validate(
        {
            "name": name,
            "task": "classification",
            "label": {"classes": [0, 1], "positive": 1},
            "fields": {field: {"type": "float"} for field in AGRAWAL_FIELDS},
            "features": [{"kind": "passthrough", "field": field} for field in AGRAWAL_FIELDS],
            "models": {"online": online},
        }
    )


def agrawal_rows(n: int, seed: int = 7, function: int = 0) -> list[tuple[dict[str, float], int]]:
    """``n`` Agrawal rows as (feature dict of floats, label)."""
    stream = datasets.synth.Agrawal(classification_function=function, seed=seed)
    return [({k: float(v) for k, v in x.items()}, int(y)) for x, y in stream.take(n)]


def as_events(
    data: list[tuple[dict[str, float], int]], prefix: str = "e", offset: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Feature rows and labels (as the topics carry them) for ``data``."""
    rows, labels = [], []
    for i, (x, y) in enumerate(data, start=offset):
        event_id = f"{prefix}{i}"
        rows.append(
            {
                "usecase": "agrawal",
                "source_event_id": event_id,
                "entity_id": f"c{i % 97}",
                "event_timestamp": f"2026-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}Z",
                "features": x,
            }
        )
        labels.append({"event_id": event_id, "label": y, "timestamp": "2026-01-01T01:00:00Z"})
    return rows, labels


@pytest.fixture
def spec() -> UseCase:
    return agrawal_spec()
