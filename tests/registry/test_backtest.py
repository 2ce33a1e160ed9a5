"""``promotion.backtest``: the registry back-tests a candidate against the champion first.

A candidate whose trainer reports 0.95 ROC AUC but was taught inverted
labels passes the gate on its reported metric (its training window covers
every stored row, so none is held out) and loses the back-test over the
store's last hour to the Hoeffding tree champion: with ``must_not_lose`` it
is refused, with the back-test's figures in the reason, and the back-test is
published on ``models.backtests`` with its report.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from schemas import topics
from schemas.backtests import Backtest
from schemas.events import Promotion, Window
from services.common.bus import start_producer
from services.common.promotions.history import ModelRef
from services.common.serde import encode
from services.registry.backtest import BacktestImpossible, Side, in_range, run_backtest
from tests.registry.conftest import (
    ROWS,
    START,
    gate_frame,
    make_spec,
    read_topic,
    register,
    running_registry,
    train,
)


def test_rows_outside_the_store_are_named_and_an_empty_range_is_refused() -> None:
    spec = make_spec("bt")
    frame = gate_frame()
    asked = Window(start=START - timedelta(hours=1), end=START + timedelta(seconds=599))
    rows, covered, missing = in_range(frame, asked)
    assert len(rows) == 600 and covered.rows == len(ROWS)
    assert missing is not None and "no labelled rows before 2026-01-01T00:00:00+00:00" in missing
    tree = Side(ModelRef("bt", "1"), train("tree"), "model")
    linear = Side(ModelRef("bt", "2"), train("linear"), "champion")
    outcome = run_backtest(spec, frame, tree, linear, asked, buckets=4)
    assert len(outcome.rows) == outcome.scored == 600
    assert [b.rows for b in outcome.buckets] == [150, 150, 150, 150]
    assert outcome.evaluation["model"].startswith("prequential")
    assert outcome.winner == "model"
    later = Window(start=START + timedelta(days=2))
    with pytest.raises(BacktestImpossible, match="no labelled rows in the store between"):
        run_backtest(spec, frame, tree, linear, later)
    # a copy learns: the model passed in is left as it was
    before = tree.model.predict_proba([ROWS[0][0]])
    run_backtest(spec, frame, tree, linear, Window())
    assert tree.model.predict_proba([ROWS[0][0]]) == before


@pytest.mark.integration
async def test_must_not_lose_refuses_a_candidate_that_loses_its_backtest(
    bootstrap: str, home: Path, unique: str
) -> None:
    spec = make_spec(unique, mode="direct", backtest={"window_hours": 1, "must_not_lose": True})
    champion = register(home, spec, "tree")
    late = START + timedelta(days=1)  # trained on every stored row: the gate falls back
    boaster = register(home, spec, "inverted", reported=0.95, window_end=late)
    ours = lambda v: v.get("usecase") == unique  # noqa: E731
    producer = await start_producer(bootstrap)
    try:
        async with running_registry(bootstrap, home, spec, group=f"{unique}-g"):
            for number, candidate in enumerate((champion, boaster), start=1):
                await producer.send_and_wait(topics.MODELS_CANDIDATES, encode(candidate))
                found = await read_topic(bootstrap, topics.MODELS_PROMOTIONS, ours, number)
        tested = await read_topic(bootstrap, topics.MODELS_BACKTESTS, ours, 1)
    finally:
        await producer.stop()
    first, second = (Promotion.model_validate(v) for v in found)
    assert first.action == "promote" and first.model_version == champion.model_version
    assert second.action == "reject", second.reason
    assert second.reason.startswith("loses its back-test against the champion")
    assert f"on {len(ROWS)} of {len(ROWS)} stored rows" in second.reason
    assert second.scores["backtest_rows"] == len(ROWS)
    assert second.scores["backtest_candidate"] < second.scores["backtest_champion"]

    (event,) = (Backtest.model_validate(v) for v in tested)
    assert (event.model_version, event.against_version) == (
        boaster.model_version, champion.model_version,
    )  # fmt: skip
    assert event.requested_by == "registry" and event.winner == "against"
    assert event.rows == event.rows_scored == len(ROWS)
    # the store holds 20 minutes of rows; the policy asked for an hour, and the event says so
    assert event.missing is not None and "no labelled rows before" in event.missing
    assert event.missing in second.reason
    assert event.evaluation == {
        "candidate": "prequential (predict, then learn, on a copy)",
        "champion": "prequential (predict, then learn, on a copy)",
    }
    assert event.report_html and Path(event.report_html).is_file()
    assert event.report_png and Path(event.report_png).stat().st_size > 1000
    assert event.metric == "roc_auc" and len(event.buckets) == 10
