"""Live trials: a canary challenger judged on predictions joined with late labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.events import ModelCandidate, Prediction, Promotion
from services.common.bus import start_producer
from services.common.serde import encode
from tests.registry.conftest import (
    ROWS,
    TRAIN_ROWS,
    aliases,
    eventually,
    make_spec,
    read_topic,
    register,
    running_registry,
)

pytestmark = pytest.mark.integration


async def serve_traffic(
    producer: AIOKafkaProducer,
    usecase: str,
    champion: ModelCandidate,
    challenger: ModelCandidate,
    *,
    challenger_right: float,
    champion_right: float,
    events: int = 240,
    tag: str = "",
) -> None:
    """What the inference service and users would write: answers, then the late labels.

    A quarter of the entities are answered by the challenger (the canary);
    each side is right on a fixed share of its events.
    """
    answered: dict[str, int] = {"champion": 0, "challenger": 0}
    for i in range(events):
        truth = ROWS[TRAIN_ROWS + i][1]
        entity = i % 40
        side, model = ("challenger", challenger) if entity % 4 == 0 else ("champion", champion)
        share = challenger_right if side == "challenger" else champion_right
        answered[side] += 1
        right = (answered[side] % 20) < share * 20
        guess = truth if right else 1 - truth
        confidence = 0.6 + 0.3 * ((i * 7) % 10) / 10  # varied, so ROC AUC is informative
        prediction = Prediction(
            usecase=usecase,
            source_event_id=f"{tag}ev{i}",
            entity_id=f"c{entity}",
            model_name=model.model_name,
            model_version=model.model_version,
            variant=side,  # type: ignore[arg-type]
            prediction=guess,
            probabilities={str(guess): confidence, str(1 - guess): 1 - confidence},
            latency_ms=1.0,
        )
        await producer.send(topics.predictions(usecase), encode(prediction))
    for i in range(events):
        label: dict[str, Any] = {
            "event_id": f"{tag}ev{i}",
            "label": ROWS[TRAIN_ROWS + i][1],
            "timestamp": "2026-01-02T00:00:00Z",
        }
        await producer.send(topics.labels(usecase), encode(label))
    await producer.flush()


async def test_worse_canary_is_rolled_back_and_better_one_promoted(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = make_spec(unique, mode="canary", canary_min_count=40, canary_share=0.25)
    champion = register(home, spec, "linear")
    first_challenger = register(home, spec, "tree")
    second_challenger = register(home, spec, "tree")
    ours = lambda v: v.get("usecase") == unique  # noqa: E731
    producer = await start_producer(bootstrap)
    try:
        async with running_registry(bootstrap, home, spec, group=f"{unique}-g") as service:
            for candidate in (champion, first_challenger):
                await producer.send_and_wait(topics.MODELS_CANDIDATES, encode(candidate))
            started = await read_topic(bootstrap, topics.MODELS_PROMOTIONS, ours, 2)
            assert [e["action"] for e in started] == ["promote", "canary"]
            # the mirror follows the history: it may lag the event by a moment
            both = {"champion": champion.model_version,
                    "challenger": first_challenger.model_version}  # fmt: skip
            await eventually(lambda: aliases(home, unique) == both)
            await serve_traffic(producer, unique, champion, first_challenger,
                                challenger_right=0.4, champion_right=0.85, tag="a")  # fmt: skip
            after_first = await read_topic(bootstrap, topics.MODELS_PROMOTIONS, ours, 3)
            assert len(after_first) == 3
            only_champion = {"champion": champion.model_version}
            await eventually(lambda: aliases(home, unique) == only_champion)

            await producer.send_and_wait(topics.MODELS_CANDIDATES, encode(second_challenger))
            assert len(await read_topic(bootstrap, topics.MODELS_PROMOTIONS, ours, 4)) == 4
            await serve_traffic(producer, unique, champion, second_challenger,
                                challenger_right=0.95, champion_right=0.7, tag="b")  # fmt: skip
            found = await read_topic(bootstrap, topics.MODELS_PROMOTIONS, ours, 5)
            state = service.registry.history.get(unique)
    finally:
        await producer.stop()

    events = [Promotion.model_validate(v) for v in found]
    canary, rollback, second_canary, promoted = events[1:]
    assert canary.traffic_share == 0.25 and canary.model_version == first_challenger.model_version

    assert rollback.action == "rollback"
    assert rollback.model_version == champion.model_version  # back to the champion
    assert rollback.previous_version == first_challenger.model_version
    assert rollback.artifact_sha256 == champion.artifact_sha256
    assert rollback.scores["challenger_rows"] >= 40
    assert rollback.scores["champion"] - rollback.scores["challenger"] >= 0.02
    assert "challenger worse than the champion" in rollback.reason

    assert second_canary.action == "canary"
    assert promoted.action == "promote"
    assert promoted.model_version == second_challenger.model_version
    assert promoted.previous_version == champion.model_version
    assert promoted.scores["challenger"] > promoted.scores["champion"]
    assert state.champion is not None and state.champion.version == second_challenger.model_version
    assert state.challenger is None
    assert aliases(home, unique) == {"champion": second_challenger.model_version}
