"""The compiled single-event path gives exactly the preparer's features, or its exact refusal."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.data import workload
from schemas.usecase import UseCase, load_usecase
from services.common.errors import InvalidInput
from services.common.prep import Preparer
from services.common.prep.compiled import CompiledPreparer
from services.inference.features import FeatureResolver, Item

USECASES = Path(__file__).resolve().parents[2] / "usecases"
ODD_VALUES: list[Any] = [
    None, math.nan, math.inf, -1.0, 0, 1, 2.5, 10**400 // 10**399, 10**30, True, False, "",
    " 3 ", "3", "x" * 300, "Premium", "bachelor", " MASTER ", "other", [1], {"a": 1}, 1e308,
    -(10**30), 17.0, 18, 100, 101, 49.99, "1e400", "NaN", 250000.0, 3000000.0, 4.0,
]  # fmt: skip


def trained(spec: UseCase, events: list[dict[str, Any]]) -> Preparer:
    """A preparer with running statistics (medians, most frequent values) as served."""
    preparer = Preparer(spec)
    for event in events:
        try:
            preparer.prepare(event)
        except InvalidInput:
            pass
    return Preparer(spec, preparer.state())


def outcome(call: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """``call(*args, **kwargs)``'s features, or the reason it refused them."""
    try:
        return "features", call(*args, **kwargs)
    except InvalidInput as exc:
        return "refused", exc.reason


def mutated(spec: UseCase, event: dict[str, Any], chance: random.Random) -> dict[str, Any]:
    payload = dict(event)
    for name in list(spec.fields):
        roll = chance.random()
        if roll < 0.08:
            payload.pop(name, None)
        elif roll < 0.2:
            payload[name] = chance.choice(ODD_VALUES)
    if chance.random() < 0.1:
        payload[spec.timestamp_field] = chance.choice(["yesterday", 1_700_000_000, None, 5])
    if chance.random() < 0.05:
        payload["event_id"] = chance.choice(["", "  ", 7, "x" * 201, " e "])
    return payload


@pytest.mark.parametrize("usecase", ["credit", "phishing", "friedman"])
def test_compiled_equals_the_preparer_on_many_records(usecase: str) -> None:
    spec = load_usecase(USECASES / f"{usecase}.yaml")
    events = workload(spec, 1500, seed=3).events
    chance = random.Random(usecase)
    moment = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    for preparer in (Preparer(spec), trained(spec, events[:500])):
        compiled = CompiledPreparer(preparer)
        kinds = set()
        for event in events[500:]:
            for payload in (dict(event), mutated(spec, event, chance)):
                untimed = {k: v for k, v in payload.items() if k != spec.timestamp_field}
                timed = {**untimed, spec.timestamp_field: moment.isoformat()}
                expected = outcome(preparer.features, payload, learn=False)
                assert outcome(compiled.features, payload) == expected
                expected = outcome(preparer.features, timed, learn=False)
                assert outcome(compiled.features, untimed, moment) == expected
                kinds.add(expected[0])
        assert kinds == {"features", "refused"}  # both kinds were compared


@given(
    st.dictionaries(
        st.sampled_from(["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue",
                         "hyears", "loan"]),
        st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats()
        | st.text(max_size=8) | st.sampled_from(["2", " 3", "highschool", "Doctorate", "20"]),
    )
)  # fmt: skip
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_equals_the_preparer_on_arbitrary_fields(fields: dict[str, Any]) -> None:
    spec = load_usecase(USECASES / "credit.yaml")
    preparer = Preparer(spec)
    payload = {"event_id": "e1", "entity_id": "c1", "timestamp": "2026-01-01T00:00:00Z", **fields}
    expected = outcome(preparer.features, payload, learn=False)
    assert outcome(CompiledPreparer(preparer).features, payload) == expected


def test_the_resolver_follows_new_statistics() -> None:
    document = load_usecase(USECASES / "credit.yaml").model_dump()
    document["fields"]["salary"]["required"] = False  # imputed from the running median
    spec = UseCase.model_validate(document)
    events = workload(spec, 300, seed=4).events
    resolver = FeatureResolver(spec, None)
    fields = {k: v for k, v in events[0].items() if k in spec.fields}
    item = Item("c1", "e1", {**fields, "salary": None})
    before = resolver.resolve([item])[0].features
    state = trained(spec, events).state()
    resolver.use_statistics(state)
    after = resolver.resolve([item])[0].features
    payload = {**item.fields, "event_id": "e1", "entity_id": "c1", "timestamp": "2026-01-01T00:00Z"}
    assert after == Preparer(spec, state).features(payload, learn=False)
    assert after["salary_z"] != before["salary_z"]  # the median moved the imputed salary
