"""The gate's data source is opened at start; the first gate waits for that, not longer."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from schemas.events import ModelCandidate, Window
from schemas.usecase import UseCase
from services.registry.evaluation import Evaluator, GateScores, ModelStore
from tests.registry.conftest import make_spec


def test_warm_up_asks_for_an_empty_future_window_and_evaluate_waits_for_it(
    tmp_path: Path,
) -> None:
    spec = make_spec("warmed")
    release = threading.Event()
    asked: list[Window | None] = []

    def source(usecase: UseCase, window: Window | None) -> pd.DataFrame:
        asked.append(window)
        if len(asked) == 1:
            release.wait(10)  # the warm-up's open is slow
        return pd.DataFrame()

    evaluator = Evaluator(source, ModelStore(tmp_path, None, tmp_path / "models"), 50)
    evaluator.warm_up([spec])
    deadline = time.monotonic() + 5
    while not asked and time.monotonic() < deadline:
        time.sleep(0.01)
    [first] = asked
    assert first is not None and first.start == first.end
    assert first.start is not None and first.start > datetime.now(UTC)

    candidate = ModelCandidate(
        usecase=spec.name, model_name=spec.name, model_version="1", trainer="batch",
        flavor="linear", metrics={spec.primary_metric: 0.7}, data_window=Window(),
        artifact_uri="file:///nowhere", artifact_sha256="0" * 64,
    )  # fmt: skip
    scored: list[GateScores] = []
    worker = threading.Thread(
        target=lambda: scored.append(evaluator.evaluate(spec, candidate, None))
    )
    worker.start()
    worker.join(0.3)
    assert worker.is_alive() and not scored  # held until the warm-up is done
    release.set()
    worker.join(10)
    [scores] = scored
    assert scores.candidate == 0.7 and scores.rows == 0  # no rows: the reported metric
    assert len(asked) == 2
