"""The evaluation gate on the real broker, with real models in a real MLflow store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from schemas import topics
from schemas.events import Promotion
from services.common.bus import start_producer
from services.common.serde import encode
from tests.registry.conftest import (
    START,
    aliases,
    make_spec,
    read_topic,
    register,
    running_registry,
)

pytestmark = pytest.mark.integration


async def test_first_model_better_and_worse_candidates(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = make_spec(unique, mode="direct")
    inverted = register(home, spec, "inverted")
    linear = register(home, spec, "linear")
    best = register(home, spec, "tree")
    worse = register(home, spec, "linear")
    ours = lambda v: v.get("usecase") == unique  # noqa: E731
    producer = await start_producer(bootstrap)
    try:
        async with running_registry(bootstrap, home, spec, group=f"{unique}-g") as service:
            decisions: list[Promotion] = []
            for number, candidate in enumerate((inverted, linear, best, worse), start=1):
                await producer.send_and_wait(topics.MODELS_CANDIDATES, encode(candidate))
                found = await read_topic(bootstrap, topics.MODELS_PROMOTIONS, ours, number)
                decisions = [Promotion.model_validate(v) for v in found]
                assert len(decisions) == number
            # a redelivered candidate is found decided in the history: no second decision
            await producer.send_and_wait(topics.MODELS_CANDIDATES, encode(best))
            state = service.registry.history.get(unique)
    finally:
        await producer.stop()

    first_reject, first_promote, better, rejected = decisions
    assert (first_reject.action, first_reject.model_version) == ("reject", inverted.model_version)
    assert "does not reach min_quality 0.6" in first_reject.reason
    assert first_reject.scores["candidate"] < 0.5 and "champion" not in first_reject.scores

    assert (first_promote.action, first_promote.model_version) == ("promote", linear.model_version)
    assert first_promote.reason.startswith("first model")
    assert first_promote.previous_version is None
    assert first_promote.artifact_sha256 == linear.artifact_sha256

    assert (better.action, better.model_version) == ("promote", best.model_version)
    assert better.previous_version == linear.model_version
    assert better.scores["candidate"] - better.scores["champion"] > 0.02
    assert better.scores["eval_rows"] == 400  # eval_rows of the held-out rows
    assert better.candidate_event_id == best.event_id

    assert (rejected.action, rejected.model_version) == ("reject", worse.model_version)
    assert rejected.scores["champion"] == better.scores["candidate"]  # same rows, same model
    assert "not better than the champion" in rejected.reason

    assert state.champion is not None and state.champion.version == best.model_version
    assert aliases(home, unique) == {"champion": best.model_version}
    again = await read_topic(bootstrap, topics.MODELS_PROMOTIONS, ours, 5, timeout=3)
    assert len(again) == 4


async def test_too_few_held_out_rows_falls_back_to_reported_metric(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = make_spec(unique, mode="canary")
    # trained up to the last row: nothing held out, so the trainer's own test metric decides
    late = START + timedelta(days=1)
    weak = register(home, spec, "tree", reported=0.55, window_end=late)
    fair = register(home, spec, "linear", reported=0.71, window_end=late)
    ours = lambda v: v.get("usecase") == unique  # noqa: E731
    producer = await start_producer(bootstrap)
    try:
        async with running_registry(bootstrap, home, spec, group=f"{unique}-g") as service:
            for candidate in (weak, fair):
                await producer.send_and_wait(topics.MODELS_CANDIDATES, encode(candidate))
            found = await read_topic(bootstrap, topics.MODELS_PROMOTIONS, ours, 2)
            windows = list(service.frames)
    finally:
        await producer.stop()
    reject, promote = (Promotion.model_validate(v) for v in found)
    assert reject.action == "reject" and reject.scores == {"candidate": 0.55, "eval_rows": 0.0}
    assert "as reported by the batch trainer (fallback: 0 held-out labeled rows" in reject.reason
    # the first champion is promoted directly even in canary mode
    assert promote.action == "promote" and promote.scores["candidate"] == 0.71
    assert windows and all(w is not None and w.start == late for w in windows)
