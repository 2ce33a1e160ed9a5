"""The toy use case the feature-store tests write and read: one float, one category."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import FeatureRow
from schemas.usecase import UseCase

SPEC = UseCase.model_validate(
    {
        "name": "toy",
        "task": "classification",
        "label": {"classes": [0, 1]},
        "fields": {"x": {"type": "float"}, "c": {"type": "category", "values": [1, 2]}},
        "features": [{"kind": "passthrough", "field": "x"}, {"kind": "onehot", "field": "c"}],
    }
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(event_id: str, entity: str, minutes: float, x: float) -> FeatureRow:
    return FeatureRow(
        usecase="toy",
        source_event_id=event_id,
        entity_id=entity,
        event_timestamp=T0 + timedelta(minutes=minutes),
        features={"x": x, "c_1": 1.0, "c_2": 0.0},
    )
