"""A restarted inference loader: the champion it served warmed at start, MLflow's file store
read without importing mlflow (B10, restart to serving)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.inference.loaded import LoadedModels, MlflowLoader
from tests.reliability.helpers import registered_credit_ref

ROOT = Path(__file__).resolve().parents[2]

LOAD_WITHOUT_MLFLOW = """
import json, sys
from pathlib import Path
from services.common.promotions.history import ModelRef
from services.inference.loaded import MlflowLoader
name, version, uri, sha, home, scratch = sys.argv[1:]
model = MlflowLoader(Path(home), Path(scratch))(ModelRef(name, version, uri, sha))
print(json.dumps({"mlflow": "mlflow" in sys.modules, "flavor": model.flavor}))
"""


def test_a_file_store_artifact_loads_without_mlflow_and_a_restart_warms_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    spec, ref, sha = registered_credit_ref(home, "credit-warm")
    assert str(ref.artifact_uri).startswith("file:")
    scratch = tmp_path / "scratch"

    # A fresh process loads it from MLflow's file store: checked, kept, mlflow never imported.
    found = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_MLFLOW, ref.name, ref.version,
         str(ref.artifact_uri), sha, str(home), str(scratch)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(found.stdout.splitlines()[-1]) == {"mlflow": False, "flavor": "river"}
    cached = scratch / "by-sha256" / sha
    assert cached.is_dir()

    # A restart: the models' start warms the cached copy; the promotion's load takes it.
    loader = MlflowLoader(home, scratch)
    LoadedModels({spec.name: spec}, loader)
    assert loader._warming is not None
    loader._warming.join()
    warmed = loader._warmed[sha]
    assert loader(ref) is warmed
    assert sha not in loader._warmed  # taken once: a later load reads the copy again
    again = loader(ref)
    assert again is not warmed
    row = {name: 1.0 for name in spec.feature_names()}
    assert again.predict_proba([row]) == warmed.predict_proba([row])
