"""Properties of the preparer over arbitrary JSON: a feature row or InvalidInput, nothing else."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.usecase import load_usecase
from services.common.errors import InvalidInput
from services.common.prep import Preparer
from tests.common.test_prep import SPEC

CREDIT = load_usecase(Path(__file__).resolve().parents[2] / "usecases" / "credit.yaml")

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        ["", " 3 ", "gold", "Premium", "yes", "NaN", "1e400", "2026-01-01", "x" * 300]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
timestamps = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(max_size=10),
)


def events_for(spec: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Events that are mostly well-formed, with any field possibly replaced by junk."""
    field_values = {name: json_values for name in spec.fields}
    base = st.fixed_dictionaries(
        {
            "event_id": st.one_of(st.text(min_size=1, max_size=8), st.integers(), json_values),
            "entity_id": st.one_of(st.text(min_size=1, max_size=8), json_values),
            "timestamp": timestamps,
        },
        optional=field_values,
    )
    extra = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
    return st.builds(lambda b, e: {**e, **b}, base, extra)


def plausible(spec: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Events whose fields are drawn from their declared type, so most pass validation."""

    def value(field: Any) -> st.SearchStrategy[Any]:
        if field.type in ("float", "int"):
            low = field.min if field.min is not None else -1e6
            high = field.max if field.max is not None else 1e6
            numbers = st.integers(math.ceil(low), math.floor(high))
            return numbers if field.type == "int" else numbers | st.floats(low, high)
        if field.type == "bool":
            return st.sampled_from([True, False, 0, 1, "yes", "no"])
        if field.type == "category":
            return st.sampled_from([*(field.values or ["a"]), "unknown", None])
        if field.type == "datetime":
            return st.integers(0, 2_000_000_000)
        return st.text(max_size=8)

    return st.fixed_dictionaries(
        {
            "event_id": st.text(min_size=1, max_size=8).filter(str.strip),
            "entity_id": st.text(min_size=1, max_size=8).filter(str.strip),
            "timestamp": st.integers(0, 2_000_000_000),
        },
        optional={name: value(field) for name, field in spec.fields.items()},
    )


def check(preparer: Preparer, payload: dict[str, Any]) -> dict[str, float] | None:
    """The features, or None when the event was rejected; any other exception fails."""
    try:
        raw = json.dumps(payload).encode()
    except ValueError:  # an integer too long for json; the dict path must cope
        raw = None
    try:
        row = preparer.prepare(raw if raw is not None else payload)
    except InvalidInput as exc:
        assert exc.reason
        return None
    assert list(row.features) == preparer.spec.feature_names()
    assert all(isinstance(v, float) and math.isfinite(v) for v in row.features.values())
    return row.features


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("spec", [SPEC, CREDIT], ids=["toy", "credit"])
@FAST
@given(data=st.data())
def test_any_json_object_gives_a_feature_row_or_invalid_input(spec: Any, data: Any) -> None:
    preparer = Preparer(spec)
    for _ in range(3):
        check(preparer, data.draw(events_for(spec) | plausible(spec)))


@FAST
@given(payload=json_values)
def test_any_json_document_is_parsed_or_rejected(payload: Any) -> None:
    try:
        raw = json.dumps(payload).encode()
    except ValueError:
        return
    preparer = Preparer(SPEC)
    try:
        preparer.prepare(raw)
    except InvalidInput:
        pass


@FAST
@given(history=st.lists(plausible(SPEC), max_size=8), probe=plausible(SPEC))
def test_state_round_trips_and_gives_the_same_features(
    history: list[dict[str, Any]], probe: dict[str, Any]
) -> None:
    preparer = Preparer(SPEC)
    for payload in history:
        check(preparer, payload)
    state = json.loads(json.dumps(preparer.state()))
    restored = Preparer(SPEC, state)
    assert restored.state() == preparer.state()
    assert check(restored, probe) == check(preparer, probe)
    assert restored.state() == preparer.state()
