"""The prediction journal's line is the ``Prediction`` event's own JSON: the same event,
and the same bytes except how a float far from 1 writes its exponent (msgspec ``1e+16``,
pydantic ``1e16``: the same number)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.events import Prediction
from services.inference.journal import event_line


def fields(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "0f" * 16, "event_type": "prediction", "schema_version": 1,
        "occurred_at": datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=UTC), "usecase": "credit",
        "prediction_id": "ab" * 16, "source_event_id": "src-1",
        "entity_id": "cust-7", "model_name": "credit", "model_version": "12",
        "variant": "champion", "prediction": 1, "probabilities": {"0": 0.25, "1": 0.75},
        "latency_ms": 0.4123,
    }  # fmt: skip
    return {**base, **changes}


def model_json(given: dict[str, Any]) -> bytes:
    return Prediction(**given).model_dump_json().encode()


def awkward_floats(rng: random.Random) -> list[float]:
    found = [0.0, -0.0, 1.0, 0.1, 1e-7, 1e-5, 1e16, 1.5e300, 5e-324, 2.0**53, 123456789.125]
    found += [rng.random() for _ in range(300)]
    found += [10 ** rng.uniform(-30, 30) * rng.choice((-1, 1)) for _ in range(300)]
    return found


def same_event(line: bytes, given: dict[str, Any]) -> bool:
    return Prediction.model_validate_json(line) == Prediction(**given)


def test_the_common_case_writes_the_models_bytes() -> None:
    cases = [fields()]
    cases += [fields(prediction=p) for p in (0, -3, 2**40, True, False, "yes", 0.5, -2.75)]
    cases += [fields(prediction='ünïcödé \u2028 "quoted" \\ \n\t\x00\x1f')]
    cases += [fields(entity_id="é/\u00a0", source_event_id=None, probabilities=None)]
    cases += [fields(variant=v) for v in ("challenger", "shadow")]
    cases += [fields(occurred_at=datetime(2026, 1, 1, tzinfo=UTC))]  # no fraction
    for case in cases:
        assert event_line(case) == model_json(case), case


def test_any_float_makes_the_same_event() -> None:
    rng = random.Random(7)
    cases = [fields(latency_ms=abs(x)) for x in awkward_floats(rng)]
    cases += [fields(probabilities={"0": x, "1": rng.random()}) for x in awkward_floats(rng)]
    cases += [fields(prediction=x) for x in awkward_floats(rng)]
    for case in cases:
        assert same_event(event_line(case), case), case
    positional = [fields(latency_ms=x) for x in (0.0, 0.001, 0.25, 3.5, 1234.5678)]
    for case in positional:
        assert event_line(case) == model_json(case), case


def test_anything_else_is_the_models_own_answer() -> None:
    plus_one = timezone(timedelta(hours=1))
    odd = [
        fields(latency_ms=3),  # an int where the model writes a float
        fields(occurred_at=datetime(2026, 1, 1, tzinfo=plus_one)),
        fields(occurred_at=1764810000.25),  # Unix seconds, as an older journal holds
        fields(probabilities={"0": 1, "1": 0}),
        {k: v for k, v in fields().items() if k not in ("event_type", "schema_version")},
        {"latency_ms": 1.0, **fields()},  # the fields out of the model's order
        fields(schema_version=True),
    ]
    for case in odd:
        assert event_line(case) == model_json(case), case


@pytest.mark.parametrize(
    "broken",
    [
        fields(latency_ms=-1.0),
        fields(latency_ms=math.nan),
        fields(probabilities={"1": math.inf}),
        fields(prediction=None),
        fields(prediction=math.nan),
        fields(variant="canary"),
        fields(usecase=""),
        fields(unknown=1),
        fields(schema_version=2),
        fields(event_type="label"),
        {k: v for k, v in fields().items() if k != "entity_id"},
    ],
)
def test_fields_that_make_no_prediction_are_refused_as_the_model_refuses_them(
    broken: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        Prediction(**broken)
    with pytest.raises(ValidationError):
        event_line(broken)
