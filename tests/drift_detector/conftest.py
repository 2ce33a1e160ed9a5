"""Factories for the drift detector's tests: the credit demo, featurized, with small windows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.events import FeatureRow, ModelCandidate, Window
from schemas.usecase import UseCase, load_usecase
from services.common.errors import InvalidInput
from services.common.prep import Preparer
from services.demo.data import demo_events
from tests.conftest import USECASES

START = datetime(2026, 1, 1, tzinfo=UTC)
SMALL = {
    "window_rows": 300,
    "step_rows": 150,
    "reference_rows": 400,
    "min_rows": 100,
    "cooldown_seconds": 60,
}


def credit_spec(name: str = "credit", **drift: Any) -> UseCase:
    """The credit use case under another name, with small drift windows."""
    document = load_usecase(USECASES / "credit.yaml").model_dump(mode="json")
    document["name"] = name
    document["drift"] = {**document["drift"], **SMALL, **drift}
    return UseCase.model_validate(document)


def feature_rows(
    spec: UseCase, events: int, *, drift_at: int | None = None, seed: int = 42
) -> list[FeatureRow]:
    """The demo stream of ``spec`` through the shared preparer (rejected events dropped)."""
    preparer = Preparer(spec)
    rows = []
    for demo in demo_events(spec, events=events, seed=seed, drift_at=drift_at, start=START):
        try:
            rows.append(preparer.prepare(demo.event))
        except InvalidInput:
            continue
    return rows


def candidate(spec: UseCase, version: str, **metrics: float) -> ModelCandidate:
    return ModelCandidate(
        usecase=spec.name,
        model_name=spec.name,
        model_version=version,
        trainer="batch",
        flavor="torch",
        metrics=metrics or {"roc_auc": 0.9},
        data_window=Window(start=START, rows=400),
        artifact_uri=f"models:/{spec.name}/{version}",
        artifact_sha256="0" * 64,
    )
