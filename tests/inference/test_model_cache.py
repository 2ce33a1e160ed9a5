"""The inference loader's copy of each verified artifact, by sha256, in a real MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.inference.loaded import MlflowLoader
from tests.reliability.helpers import registered_credit_ref


def test_a_restarted_loader_serves_its_verified_copy_and_refuses_a_damaged_one(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    spec, ref, sha = registered_credit_ref(home, "credit-cache")
    scratch = tmp_path / "scratch"
    first = MlflowLoader(home, scratch)(ref)
    cached = scratch / "by-sha256" / sha
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
