"""Online contenders: river's adaptive random forest learns beside the spec's model.

Real river models on one stream, a real MLflow store for the snapshot: where
the label is an XOR of two thresholds (no linear model fits it), the forest's
rolling score is better and the snapshot registers the forest; where the
margin makes the gap a tie, the simpler model is registered.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from schemas.usecase import UseCase
from services.common import tracking
from services.common.models import load_model
from services.common.models.protocol import MANIFEST
from services.online_trainer.contenders import choose
from services.online_trainer.service import fresh_state
from services.online_trainer.snapshot import register_snapshot

FIELDS = ("x0", "x1", "x2")


def xor_spec(margin: float = 0.0, **online: Any) -> UseCase:
    return UseCase.model_validate(
        {
            "name": "xor",
            "task": "classification",
            "label": {"classes": [0, 1], "positive": 1},
            "fields": {name: {"type": "float"} for name in FIELDS},
            "features": [{"kind": "passthrough", "field": name} for name in FIELDS],
            "models": {"online": {"model": "logistic_regression", "rolling_window": 300,
                                  "contenders": ["adaptive_random_forest"], **online}},
            "promotion": {"margin": margin},
        }
    )  # fmt: skip


def xor_rows(n: int, seed: int = 1) -> list[tuple[dict[str, float], int]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x = {name: rng.uniform(-1, 1) for name in FIELDS}
        rows.append((x, int((x["x0"] > 0.2) != (x["x1"] > -0.3))))
    return rows


@pytest.fixture(scope="module")
def learned() -> Any:
    state = fresh_state(xor_spec())
    for x, y in xor_rows(1500):
        state.learner.learn_one(x, y)
    state.offsets = {"xor.labels:0": 1500, "xor.features:0": 1500}
    return state


def test_the_forest_wins_a_stream_no_linear_model_fits(learned: Any) -> None:
    spec = xor_spec()
    learner = learned.learner
    assert [e.name for e in learner.entrants()] == ["logistic_regression", "adaptive_random_forest"]
    counts = [e.metrics.rows for e in learner.entrants()]  # scored on every row with an answer
    assert min(counts) >= 1499 and learner.rows_learned == 1500
    choice = choose(spec, learner.entrants())
    assert choice.name == "adaptive_random_forest", choice.reason
    assert choice.scores["adaptive_random_forest"] > choice.scores["logistic_regression"] + 0.2
    # the spec's model and its drift monitor are unchanged by the contender
    assert learner.model.estimator is learner.entrants()[0].model.estimator


def test_within_the_margin_the_simpler_model_is_snapshotted(learned: Any) -> None:
    choice = choose(xor_spec(), learned.learner.entrants())
    gap = choice.scores["adaptive_random_forest"] - choice.scores["logistic_regression"]
    tied = choose(xor_spec(margin=gap + 1e-9), learned.learner.entrants())
    assert tied.name == "logistic_regression" and "simpler" in tied.reason


@pytest.mark.integration
def test_the_snapshot_registers_the_winner_and_names_it(
    home: Path, tmp_path: Path, learned: Any
) -> None:
    spec = xor_spec()
    candidate = register_snapshot(home, spec, learned, home)
    assert candidate.family == "adaptive_random_forest"
    assert set(candidate.validation_scores or {}) == {
        "logistic_regression",
        "adaptive_random_forest",
    }
    assert candidate.lineage["model"] == "adaptive_random_forest"
    forest = learned.learner.contenders[0]
    assert candidate.metrics["rolling_roc_auc"] == pytest.approx(
        forest.metrics.rolling_values()["roc_auc"]
    )
    client = tracking.client(home)
    model_dir = tracking.download_model_dir(client, candidate.artifact_uri, tmp_path / "dl")
    served = load_model(model_dir, expected_sha256=candidate.artifact_sha256)
    rows = [x for x, _ in xor_rows(30, seed=9)]
    assert served.predict_proba(rows) == forest.model.predict_proba(rows)
    estimator = json.loads((model_dir / MANIFEST).read_text())["estimator"]
    assert estimator == "Pipeline"  # StandardScaler | ARFClassifier


def test_without_contenders_the_candidate_is_as_before() -> None:
    spec = xor_spec(contenders=[])
    state = fresh_state(spec)
    assert state.learner.contenders == []
    assert choose(spec, state.learner.entrants()).name == "logistic_regression"


def test_an_online_contender_of_the_other_task_is_a_spec_error() -> None:
    with pytest.raises(ValueError, match="is not a classification model"):
        xor_spec(contenders=["adaptive_random_forest_regressor"])
    with pytest.raises(ValueError, match="named twice"):
        xor_spec(contenders=["hoeffding_tree", "hoeffding_tree"])
    with pytest.raises(ValueError, match="adaptive_random_forest"):
        xor_spec(contenders=["random_forest"])
