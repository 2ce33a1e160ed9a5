"""The inference service, a real process, SIGKILLed while answering, then restarted.

What must survive: the serving state (the restarted process folds the promotion
history again and answers with the same champion) and every prediction logged
before the kill. What may not: the prediction log is written off the request
path (batched every 20 ms), so the answers of the last moment before a SIGKILL
can miss ``<uc>.predictions``; the test bounds that window to the answers of
the last second and reports the count. A clean stop (SIGTERM) flushes the log.
"""

from __future__ import annotations

import time

import httpx
import pytest

from schemas import topics
from tests.inference.conftest import raw_events, request_fields
from tests.reliability import tally
from tests.reliability.helpers import (
    served_inference,
    wait_ready,
)
from tests.stack import Stack, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def ask(base: str, usecase: str, count: int, seed: int) -> list[tuple[float, dict[str, str]]]:
    """``count`` answered predictions, each with the time it was answered."""
    answers = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for event, _ in raw_events(count, seed=seed):
            body = {"entity_id": event["entity_id"], "features": request_fields(event)}
            answer = http.post(f"/v1/predict/{usecase}", json=body)
            assert answer.status_code == 200, answer.text
            answers.append((time.monotonic(), answer.json()))
    return answers


def test_a_killed_inference_service_comes_back_with_its_champion(stack: Stack, unique: str) -> None:
    base, promotion = served_inference(stack, unique)
    port = base.rsplit(":", 1)[1]
    before = ask(base, unique, 300, seed=3)
    stack.kill("inference")
    killed_at = time.monotonic()
    tally.add("faults_injected")

    stack.start("inference", DRIFTLINE_PORT=port, DRIFTLINE_USECASES=unique)

    wait_ready(stack, base)
    after = ask(base, unique, 100, seed=4)
    served = {(a["model_name"], a["model_version"]) for _, a in before + after}
    assert served == {(promotion.model_name, promotion.model_version)}
    stack.stop_all()  # SIGTERM: the restarted process flushes its log

    logged = {p["prediction_id"] for p in read_topic(stack.bootstrap, topics.predictions(unique))}
    settled = [a["prediction_id"] for at, a in before if at < killed_at - 1.0]
    in_last_second = [a["prediction_id"] for at, a in before if at >= killed_at - 1.0]
    assert set(settled) <= logged  # nothing answered a second before the kill is lost
    assert {a["prediction_id"] for _, a in after} <= logged
    lost = len(set(in_last_second) - logged)
    print(f"predictions answered in the last second before SIGKILL and not logged: {lost}")
    tally.add("events_checked", len(before) + len(after))
    tally.add("faults_survived")
