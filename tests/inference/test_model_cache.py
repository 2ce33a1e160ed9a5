"""The inference loader's copy of each verified artifact, by sha256, in a real MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from schemas.usecase import load_usecase
from services.common.promotions.history import ModelRef
from services.inference.loaded import MlflowLoader
from tests.reliability.helpers import register_credit_model

ROOT = Path(__file__).resolve().parents[2]


def test_a_restarted_loader_serves_its_verified_copy_and_refuses_a_damaged_one(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    spec = load_usecase(ROOT / "usecases" / "credit.yaml")
    promotion = register_credit_model(home, spec, "credit-cache")
    assert promotion.artifact_uri is not None and promotion.artifact_sha256 is not None
    ref = ModelRef("credit-cache", promotion.model_version, promotion.artifact_uri,
                   promotion.artifact_sha256)  # fmt: skip
    scratch = tmp_path / "scratch"
    first = MlflowLoader(home, scratch)(ref)
    cached = scratch / "by-sha256" / promotion.artifact_sha256
    assert cached.is_dir()

    # MLflow's artifacts gone: a new loader (a restarted service) still has the model.
    shutil.rmtree(home / "mlflow" / "artifacts")
    again = MlflowLoader(home, scratch)(ref)
    row = {name: 1.0 for name in spec.feature_names()}
    assert again.predict_proba([row]) == first.predict_proba([row])

    # A damaged copy is dropped, and MLflow (gone here) is asked again: nothing wrong is served.
    model_file = next(path for path in cached.iterdir() if path.name != "driftline-model.json")
    model_file.write_bytes(b"tampered")
    with pytest.raises(Exception):  # noqa: B017 - whichever way MLflow says the artifact is gone
        MlflowLoader(home, scratch)(ref)
    assert not cached.exists()
