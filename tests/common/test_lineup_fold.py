"""One promotion history, one lineup: every reader of ``models.promotions`` agrees.

The same history goes to the promoter's fold (:class:`PromotionHistory`), to
inference (applied live, and replayed at start), to the drift detector's
lineage and to the live view. Each history is one where the readers' own
folds once disagreed: a redelivered event (inference and the drift detector
did not drop it), a trial rolled back, a rollback past earlier champions, a
canary followed by a reject, a shadow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.events import Promotion
from schemas.usecase import UseCase
from services.common.promotions.history import ModelRef, PromotionHistory
from services.drift_detector.reference import Lineage
from services.inference.loaded import LoadedModels
from services.telemetry.story import Story

UC = "credit"
START = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = UseCase.model_validate(
    {
        "name": UC,
        "task": "regression",
        "fields": {"x": {"type": "float"}},
        "features": [{"kind": "passthrough", "field": "x"}],
        "promotion": {"canary_share": 0.5},
    }
)

# (champion version, challenger version, challenger mode, canary share)
View = tuple[str | None, str | None, str | None, float | None]


def event(n: int, action: str, version: str, **extra: Any) -> Promotion:
    return Promotion(
        event_id=f"p{n}",
        usecase=UC,
        action=action,  # type: ignore[arg-type]
        model_name=UC,
        model_version=version,
        artifact_uri=f"file:///models/{version}",
        artifact_sha256=f"{int(version):064x}",
        reason="test",
        occurred_at=START + timedelta(seconds=n),
        **extra,
    )


CANARY = event(2, "canary", "2", traffic_share=0.2)
HISTORIES: dict[str, tuple[list[Promotion], View]] = {
    "canary then reject": (
        [event(1, "promote", "1"), CANARY, event(3, "reject", "3")],
        ("1", "2", "canary", 0.2),
    ),
    "canary won, then its event redelivered": (
        [event(1, "promote", "1"), CANARY, event(3, "promote", "2"), CANARY],
        ("2", None, None, None),
    ),
    "promote redelivered after a newer champion": (
        [event(1, "promote", "1"), event(2, "promote", "2"), event(1, "promote", "1")],
        ("2", None, None, None),
    ),
    "canary rolled back to the champion": (
        [event(1, "promote", "1"), CANARY, event(3, "rollback", "1", previous_version="2")],
        ("1", None, None, None),
    ),
    "rollback during a canary, to an earlier champion": (
        [
            event(1, "promote", "1"),
            event(2, "promote", "2"),
            event(3, "canary", "3", traffic_share=0.3),
            event(4, "rollback", "1", previous_version="2"),
        ],
        ("1", None, None, None),
    ),
    "two rollbacks go two champions back": (
        [
            event(1, "promote", "1"),
            event(2, "promote", "2"),
            event(3, "promote", "3"),
            event(4, "rollback", "2", previous_version="3"),
            event(5, "rollback", "1", previous_version="2"),
        ],
        ("1", None, None, None),
    ),
    "shadow": (
        [event(1, "promote", "1"), event(2, "shadow", "2", traffic_share=0.0)],
        ("1", "2", "shadow", None),
    ),
    "canary naming no share answers none": (
        [event(1, "promote", "1"), event(2, "canary", "2")],
        ("1", "2", "canary", 0.0),
    ),
}


def promoter_view(events: list[Promotion]) -> View:
    state = PromotionHistory().apply_all(events).get(UC)
    trial = state.challenger
    if trial is None:
        return (state.champion.version if state.champion else None, None, None, None)
    share = trial.traffic_share if trial.mode == "canary" else None
    return (state.champion.version if state.champion else None, trial.model.version,
            trial.mode, share)  # fmt: skip


def registry() -> LoadedModels:
    def loader(ref: ModelRef) -> Any:
        return f"model {ref.label}"

    return LoadedModels({UC: SPEC}, loader)


def inference_view(models: LoadedModels) -> View:
    serving = models.serving(UC)
    lineup = serving.lineup
    assert [m.ref for m in (serving.champion, serving.challenger) if m] == lineup.refs()
    champion = lineup.champion.version if lineup.champion else None
    challenger = lineup.challenger.version if lineup.challenger else None
    share = lineup.share if lineup.mode == "canary" else None
    return (champion, challenger, lineup.mode, share)


def live_view(events: list[Promotion]) -> View:
    state = Story(UC)
    for promotion in events:
        state.observe(promotion, at=promotion.occurred_at.timestamp())
    champion = state.champion.version if state.champion else None
    challenger = state.challenger
    if challenger is None:
        return (champion, None, None, None)
    share = challenger.traffic_share if challenger.role == "canary" else None
    return (champion, challenger.version, challenger.role, share)


@pytest.mark.parametrize("name", list(HISTORIES))
async def test_every_reader_folds_the_same_lineup(name: str) -> None:
    events, expected = HISTORIES[name]
    assert promoter_view(events) == expected

    live = registry()
    for promotion in events:
        await live.apply(promotion)
    assert inference_view(live) == expected
    replayed = registry()
    await replayed.replay(events)
    assert inference_view(replayed) == expected

    lineage = Lineage()
    for promotion in events:
        lineage.offer_promotion(promotion)
    assert lineage.champion(UC) == (UC, expected[0])

    assert live_view(events) == expected


async def test_inference_refuses_a_model_without_artifact_and_its_fold_stays() -> None:
    bare = Promotion(event_id="p9", usecase=UC, action="canary", model_name=UC,
                     model_version="9", traffic_share=0.5, reason="no artifact")  # fmt: skip
    models = registry()
    await models.apply(event(1, "promote", "1"))
    assert not await models.apply(bare)
    assert await models.apply(event(2, "canary", "2", traffic_share=0.2))
    assert inference_view(models) == ("1", "2", "canary", 0.2)
    assert models.refusals == 1
    replayed = registry()
    await replayed.replay([event(1, "promote", "1"), bare])
    assert inference_view(replayed) == ("1", None, None, None)


async def test_a_model_that_fails_to_load_leaves_the_lineup_and_the_fold() -> None:
    def loader(ref: ModelRef) -> Any:
        if ref.version == "3":
            raise OSError("artifact gone")
        return ref.label

    models = LoadedModels({UC: SPEC}, loader)
    await models.apply(event(1, "promote", "1"))
    assert not await models.apply(event(2, "promote", "3"))
    # Had the fold kept the refused promote, v1 would be an earlier champion of v3 and the
    # canary's champion would be v3: it is v1, as if the refused event had never come.
    await models.apply(CANARY)
    assert inference_view(models) == ("1", "2", "canary", 0.2)
    assert models.swaps == 2 and models.refusals == 1
