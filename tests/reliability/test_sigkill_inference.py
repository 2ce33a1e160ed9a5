"""The inference service, a real process, SIGKILLed while answering, then restarted.

What must survive: the serving state (the restarted process folds the promotion
history again and answers with the same champion) and every answered
prediction: each is journaled before its answer returns, and the restarted
process sends what the killed one had not shipped before it serves again. So
every ``prediction_id`` a client received is on ``<uc>.predictions``; a few
may be there twice (sent, then sent again because the kill came before the
shipped offset was recorded), which consumers deduplicate by ``prediction_id``.
The test reports that count.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

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

CLIENTS = 4


def ask(base: str, usecase: str, count: int, seed: int) -> list[dict[str, str]]:
    """``count`` answered predictions."""
    answers = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for event, _ in raw_events(count, seed=seed):
            body = {"entity_id": event["entity_id"], "features": request_fields(event)}
            answer = http.post(f"/v1/predict/{usecase}", json=body)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
    return answers


def ask_until_gone(base: str, usecase: str, seed: int, answers: list[dict[str, str]]) -> None:
    """Ask until the service stops answering; every 200 goes to ``answers``."""
    with httpx.Client(base_url=base, timeout=30) as http:
        for event, _ in raw_events(5000, seed=seed):
            body = {"entity_id": event["entity_id"], "features": request_fields(event)}
            try:
                answer = http.post(f"/v1/predict/{usecase}", json=body)
            except httpx.HTTPError:
                return  # killed: this request was never answered
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())


def test_a_killed_inference_service_comes_back_with_its_champion(stack: Stack, unique: str) -> None:
    base, promotion = served_inference(stack, unique)
    port = base.rsplit(":", 1)[1]
    before: list[dict[str, str]] = []
    clients = [
        threading.Thread(target=ask_until_gone, args=(base, unique, seed, before))
        for seed in range(10, 10 + CLIENTS)
    ]
    for client in clients:
        client.start()
    deadline = time.monotonic() + 120
    while len(before) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    stack.kill("inference")  # in the middle of answering: CLIENTS requests in flight
    for client in clients:
        client.join(60)
    assert len(before) >= 300
    tally.add("faults_injected")

    stack.start("inference", DRIFTLINE_PORT=port, DRIFTLINE_USECASES=unique)

    wait_ready(stack, base)
    after = ask(base, unique, 100, seed=4)
    served = {(a["model_name"], a["model_version"]) for a in before + after}
    assert served == {(promotion.model_name, promotion.model_version)}
    stack.stop_all()  # SIGTERM: the restarted process flushes its log

    copies = Counter(
        p["prediction_id"] for p in read_topic(stack.bootstrap, topics.predictions(unique))
    )
    answered = [a["prediction_id"] for a in before + after]
    assert len(set(answered)) == len(answered)
    lost = [prediction_id for prediction_id in answered if prediction_id not in copies]
    duplicates = sum(count - 1 for count in copies.values())
    in_flight = len(set(copies) - set(answered))  # journaled, the kill came before the answer
    print(
        f"answered before SIGKILL: {len(before)}, after: {len(after)}; lost: {len(lost)}, "
        f"sent twice: {duplicates}, logged but never answered: {in_flight}"
    )
    tally.add("events_checked", len(answered))
    tally.add("events_lost", len(lost))
    tally.add("events_redelivered", duplicates)
    assert not lost, f"{len(lost)} answered predictions are not on {topics.predictions(unique)}"
    tally.add("faults_survived")
