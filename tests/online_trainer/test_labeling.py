"""Label requests chosen by uncertainty within the budget (services/online_trainer/labeling.py)."""

from __future__ import annotations

import math
import pickle
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Prediction
from schemas.usecase import UseCase, UseCaseError, load_usecase
from services.online_trainer.labeling import (
    HOUR,
    LabelBudget,
    LabelSelector,
    entropy,
    margin,
    request_id,
)
from tests.online_trainer.conftest import agrawal_spec


def spec_with(**policy: Any) -> UseCase:
    """The Agrawal use case with ``active_learning: policy``."""
    return UseCase.model_validate({**agrawal_spec().model_dump(), "active_learning": policy})


def served(source: str, p1: float, variant: str = "champion", at: float = 0.0) -> Prediction:
    return Prediction(
        usecase="agrawal",
        source_event_id=source,
        entity_id="c1",
        model_name="agrawal-online",
        model_version="1",
        variant=variant,  # type: ignore[arg-type]
        prediction=int(p1 >= 0.5),
        probabilities={"0": 1 - p1, "1": p1},
        latency_ms=1.0,
        occurred_at=datetime.fromtimestamp(at, UTC),
    )


def within_budget(times: list[float], budget: int) -> bool:
    """No half-open hour [t, t + 3600) holds more than ``budget`` of ``times``."""
    ordered = sorted(times)
    start = 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - HOUR:
            start += 1
        if end - start + 1 > budget:
            return False
    return True


@settings(max_examples=150, deadline=None)
@given(
    budget=st.integers(min_value=1, max_value=50),
    interval=st.sampled_from([1.0, 7.5, 60.0, 600.0, 3600.0]),
    gaps=st.lists(st.floats(min_value=0.0, max_value=900.0), min_size=1, max_size=400),
    p1s=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=400, max_size=400),
)
def test_the_requests_never_exceed_the_budget_in_any_hour(
    budget: int, interval: float, gaps: list[float], p1s: list[float]
) -> None:
    selector = LabelSelector(
        spec_with(budget_per_hour=budget, interval_seconds=interval), LabelBudget()
    )
    now = 0.0
    for index, gap in enumerate(gaps):
        now += gap
        selector.offer(served(f"e{index}", p1s[index], at=now), now)
    selector.close_due(now + HOUR)
    requests = selector.budget.outbox
    times = [r.occurred_at.timestamp() for r in requests]
    assert within_budget(times, budget)
    assert len({r.event_id for r in requests}) == len(requests)  # no event asked twice
    # Each interval grants at most its share of the budget plus one.
    per_interval: defaultdict[float, int] = defaultdict(int)
    for moment in times:
        per_interval[moment] += 1
    assert max(per_interval.values(), default=0) <= math.floor(budget * interval / HOUR + 1)


@settings(max_examples=60, deadline=None)
@given(p1s=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=200))
def test_the_most_uncertain_of_an_interval_are_chosen(p1s: list[float]) -> None:
    selector = LabelSelector(spec_with(budget_per_hour=360, interval_seconds=60), LabelBudget())
    for index, p1 in enumerate(p1s):  # all in the first minute
        selector.offer(served(f"e{index}", p1, at=index * 0.1), index * 0.1)
    selector.close_due(60.0)
    chosen = selector.budget.outbox
    assert len(chosen) == min(len(p1s), 7)  # a fresh budget: one share (6) plus one
    scores = sorted((margin([p, 1 - p]) for p in p1s), reverse=True)
    assert [r.uncertainty for r in chosen] == scores[: len(chosen)]
    assert [r.rank for r in chosen] == list(range(1, len(chosen) + 1))
    assert all(r.candidates == len(p1s) and r.strategy == "margin" for r in chosen)


def test_a_steady_stream_is_paced_at_the_budget_and_the_limit_holds_across_a_restart() -> None:
    selector = LabelSelector(spec_with(budget_per_hour=200, interval_seconds=60), LabelBudget())
    for second in range(2 * 3600):  # one prediction a second for two hours
        if second == 3000:  # the checkpoint is the selector's state: pickle it and go on
            selector = LabelSelector(selector.spec, pickle.loads(pickle.dumps(selector.budget)))
        selector.offer(served(f"e{second}", (second * 0.37) % 1.0, at=second), float(second))
    times = [r.occurred_at.timestamp() for r in selector.budget.outbox]
    assert within_budget(times, 200)
    assert 390 <= len(times) <= 400  # 3.33 a minute for two hours, none saved up
    first_hour = [t for t in times if t <= HOUR]
    assert 198 <= len(first_hour) <= 200


def test_shadows_duplicates_and_answers_without_probabilities_are_not_requested() -> None:
    selector = LabelSelector(spec_with(budget_per_hour=3600, interval_seconds=10), LabelBudget())
    selector.offer(served("shadowed", 0.5, variant="shadow"), 0.0)
    selector.offer(served("twice", 0.5), 1.0)
    selector.offer(served("twice", 0.5, variant="challenger"), 2.0)
    blind = served("blind", 0.5).model_copy(update={"probabilities": None})
    selector.offer(blind, 3.0)
    selector.close_due(10.0)
    assert [r.source_event_id for r in selector.budget.outbox] == ["twice"]
    assert selector.budget.unscored == 1
    selector.offer(served("twice", 0.5), 11.0)  # asked already within the hour
    selector.close_due(20.0)
    assert len(selector.budget.outbox) == 1


def test_a_request_carries_the_prediction_its_uncertainty_and_a_stable_id() -> None:
    selector = LabelSelector(spec_with(budget_per_hour=60, interval_seconds=60), LabelBudget())
    selector.offer(served("e1", 0.55, at=5.0), 5.0)
    selector.offer(served("e2", 0.95, at=6.0), 6.0)
    selector.close_due(60.0)
    first = selector.budget.outbox[0]
    assert first.source_event_id == "e1" and first.event_id == request_id("agrawal", "e1")
    assert first.prediction == 1 and first.probabilities == pytest.approx({"0": 0.45, "1": 0.55})
    assert first.uncertainty == pytest.approx(0.9)
    assert first.occurred_at == datetime.fromtimestamp(60.0, UTC)
    assert first.reason.startswith("margin 0.900: the most uncertain of 2 served predictions")


def test_entropy_and_random_score_and_rank_too() -> None:
    assert entropy([0.25, 0.25, 0.25, 0.25], classes=4) == pytest.approx(1.0)
    assert entropy([0.7, 0.3], classes=2) > entropy([0.9, 0.1], classes=2)
    drawn = LabelSelector(spec_with(budget_per_hour=60, strategy="random"), LabelBudget())
    for index in range(50):
        drawn.offer(served(f"e{index}", 0.99), 1.0)  # all certain: chance still picks
    drawn.close_due(60.0)
    assert len(drawn.budget.outbox) == 2 and drawn.budget.outbox[0].strategy == "random"


def test_the_spec_refuses_a_strategy_the_task_cannot_score(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="classification strategy"):
        UseCase.model_validate(
            {
                "name": "toy", "task": "regression", "fields": {"x": {"type": "float"}},
                "features": [{"kind": "passthrough", "field": "x"}],
                "active_learning": {"budget_per_hour": 10, "strategy": "margin"},
            }
        )  # fmt: skip
    with pytest.raises(ValueError, match="needs a predictive spread"):
        UseCase.model_validate(
            {
                "name": "toy", "task": "regression", "fields": {"x": {"type": "float"}},
                "features": [{"kind": "passthrough", "field": "x"}],
                "active_learning": {"budget_per_hour": 10, "strategy": "spread"},
            }
        )  # fmt: skip
    path = tmp_path / "toy.yaml"
    path.write_text(
        "task: classification\nlabel: {classes: [0, 1]}\nfields: {x: {type: float}}\n"
        "features: [{kind: passthrough, field: x}]\n"
        "active_learning: {budget_per_hour: 0, strategy: margin}\n"
    )
    with pytest.raises(UseCaseError, match=r"active_learning\.budget_per_hour"):
        load_usecase(path)


def test_the_budget_is_not_part_of_the_model_lineage() -> None:
    spec = agrawal_spec()
    assert spec_with(budget_per_hour=5).spec_hash() == spec.spec_hash()
