"""The online store's row text, joined from its parts, is the merged row's JSON."""

from __future__ import annotations

import pydantic_core
from msgspec.json import Encoder

from bench.data import workload
from bench.stack import USECASES
from schemas.usecase import load_usecase
from services.common.onlinestore import EVENT_ID, row_text


def merged(event_id: str, features: dict[str, object]) -> str:
    return Encoder().encode({EVENT_ID: event_id, **features}).decode()


def test_credit_rows_and_odd_ones_are_stored_as_the_merged_row() -> None:
    rows = workload(load_usecase(USECASES / "credit.yaml"), 500).rows
    cases = [(row.source_event_id, row.features) for row in rows]
    cases += [
        ("e1", {}),
        ('e"2\\', {"ünï": 1, "b": False, "t": "text"}),
        ("e3", {EVENT_ID: "overridden", "x": 1.0}),  # the feature's value wins, as in a dict
    ]
    for event_id, features in cases:
        text = row_text(event_id, features)
        assert text == merged(event_id, features)
        assert pydantic_core.from_json(text) == {EVENT_ID: event_id, **features}
