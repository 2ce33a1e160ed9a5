"""Training frames from river's generators, and use-case specs sized for a 2-core machine."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import torch
from river.datasets import synth

from schemas.usecase import UseCase

START = datetime(2026, 1, 1, tzinfo=UTC)
AGRAWAL_FEATURES = ["salary", "commission", "age", "hvalue", "hyears", "loan"]


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """The machine's cores are shared: one torch thread keeps tests polite (and deterministic)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _frame(stream: Any, n: int, names: list[str], label: Callable[[Any], Any]) -> pd.DataFrame:
    rows = []
    for i, (raw, y) in enumerate(itertools.islice(stream, n)):
        x = {str(k): v for k, v in raw.items()}
        rows.append(
            {
                **{name: float(x[name]) for name in names},
                "label": label(y),
                "event_timestamp": START + timedelta(seconds=i),
                "event_id": f"e{i:06d}",
                "entity_id": f"c{i % 50}",
            }
        )
    return pd.DataFrame(rows)


def agrawal_frame(n: int = 300, seed: int = 7) -> pd.DataFrame:
    """Binary labels (0/1) from river's Agrawal generator, six numeric features."""
    stream = synth.Agrawal(classification_function=2, seed=seed, balance_classes=True)
    return _frame(stream, n, AGRAWAL_FEATURES, int)


def rbf_frame(n: int = 300, seed: int = 7) -> pd.DataFrame:
    """Three classes ("a", "b", "c") from river's RandomRBF generator, four features."""
    stream = synth.RandomRBF(seed_model=seed, seed_sample=seed, n_classes=3, n_features=4)
    names = [str(k) for k in range(4)]
    rows = _frame(stream, n, names, lambda y: "abc"[y])
    return rows.rename(columns={k: f"f{k}" for k in names})


def friedman_frame(n: int = 300, seed: int = 7) -> pd.DataFrame:
    """A numeric target from river's Friedman generator, ten features."""
    names = [str(k) for k in range(10)]
    frame = _frame(synth.Friedman(seed=seed), n, names, float)
    return frame.rename(columns={k: f"x{k}" for k in names})


def make_spec(name: str, task: str, features: list[str], **batch: Any) -> UseCase:
    """A use case over numeric passthrough features, with tiny training defaults."""
    tiny: dict[str, Any] = {
        "hidden_layers": [16, 8],
        "batch_size": 32,
        "max_epochs": 8,
        "patience": 3,
        "min_rows": 100,
        "tuning": {"trials": 2, "timeout_seconds": 60, "pruner": "median"},
    }
    tiny.update(batch)
    document: dict[str, Any] = {
        "name": name,
        "task": task,
        "fields": {f: {"type": "float", "required": False, "impute": "median"} for f in features},
        "features": [{"kind": "passthrough", "field": f} for f in features],
        "models": {"batch": tiny},
    }
    if task == "classification":
        document["label"] = {"classes": [0, 1]} if name != "multi" else {"classes": ["a", "b", "c"]}
    return UseCase.model_validate(document)


def binary_spec(name: str = "credit", **batch: Any) -> UseCase:
    return make_spec(name, "classification", AGRAWAL_FEATURES, **batch)


def multiclass_spec(**batch: Any) -> UseCase:
    return make_spec("multi", "classification", [f"f{k}" for k in range(4)], **batch)


def regression_spec(name: str = "housing", **batch: Any) -> UseCase:
    return make_spec(name, "regression", [f"x{k}" for k in range(10)], **batch)
