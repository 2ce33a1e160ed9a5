"""The first gate starts importing the batch flavors' adapters, off the next gate's clock."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from schemas.events import ModelCandidate, Window
from schemas.usecase import UseCase
from services.registry.evaluation import ADAPTERS, Evaluator, ModelStore
from tests.registry.conftest import make_spec


def test_first_gate_imports_the_batch_adapters_once(tmp_path: Path) -> None:
    spec = make_spec("adapters")

    def source(usecase: UseCase, window: Window | None) -> pd.DataFrame:
        return pd.DataFrame()

    evaluator = Evaluator(source, ModelStore(tmp_path, None, tmp_path / "models"), 50)
    assert evaluator.adapters_imported == []  # nothing at construction (a restart's start)
    candidate = ModelCandidate(
        usecase=spec.name, model_name=f"{spec.name}-online", model_version="1",
        trainer="online", flavor="river", metrics={spec.primary_metric: 0.6},
        data_window=Window(), artifact_uri="file:///nowhere", artifact_sha256="0" * 64,
    )  # fmt: skip
    scores = evaluator.evaluate(spec, candidate, None)
    assert scores.candidate == 0.6 and scores.rows == 0  # no rows: the reported metric
    thread = evaluator.import_adapters()
    thread.join(120)
    assert not thread.is_alive()
    assert evaluator.adapters_imported == list(ADAPTERS)
    evaluator.evaluate(spec, candidate, None)
    assert evaluator.import_adapters() is thread  # once a process
