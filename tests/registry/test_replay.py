"""The promotion history is the source of truth: a restarted registry rebuilds the same state."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import topics
from services.common.bus import start_producer
from services.common.promotions.log import read_history
from services.common.serde import encode
from tests.registry.conftest import aliases, make_spec, read_topic, register, running_registry

pytestmark = pytest.mark.integration


async def test_restart_replays_the_history(bootstrap: str, home: Path, unique: str) -> None:
    spec = make_spec(unique, mode="direct")
    first = register(home, spec, "linear")
    second = register(home, spec, "tree")
    third = register(home, spec, "linear")
    ours = lambda v: v.get("usecase") == unique  # noqa: E731
    producer = await start_producer(bootstrap)
    try:
        async with running_registry(bootstrap, home, spec, group=f"{unique}-a") as service:
            for candidate in (first, second):
                await producer.send_and_wait(topics.MODELS_CANDIDATES, encode(candidate))
            assert len(await read_topic(bootstrap, topics.MODELS_PROMOTIONS, ours, 2)) == 2
            before = service.registry.history.get(unique)
        # A new group reads both candidates again: the replayed history knows them decided.
        async with running_registry(bootstrap, home, spec, group=f"{unique}-b") as restarted:
            after = restarted.registry.history.get(unique)
            decided_at_start = set(after.decided)
            await producer.send_and_wait(topics.MODELS_CANDIDATES, encode(first))
            await producer.send_and_wait(topics.MODELS_CANDIDATES, encode(third))
            # Decisions come in candidate order: one for the redelivered candidate would
            # come before the third candidate's.
            found = await read_topic(bootstrap, topics.MODELS_PROMOTIONS, ours, 3)
    finally:
        await producer.stop()
    assert before.champion is not None and before.champion.version == second.model_version
    assert after.champion == before.champion
    assert after.earlier == before.earlier and after.earlier[0].version == first.model_version
    assert decided_at_start == {first.event_id, second.event_id}
    assert found[2]["candidate_event_id"] == third.event_id  # nothing decided twice
    assert found[2]["action"] == "reject" and found[2]["previous_version"] == second.model_version
    assert aliases(home, unique) == {"champion": second.model_version}
    replayed = (await read_history(bootstrap)).get(unique)  # the command line's replay
    assert replayed.champion == before.champion
