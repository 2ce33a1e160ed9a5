"""Loading a saved model by its manifest's flavor, each adapter imported only when needed."""

from __future__ import annotations

import json
from pathlib import Path

from services.common.models.protocol import MANIFEST, ArtifactMismatch, Model, sha256_of


def load_model(directory: Path | str, expected_sha256: str | None = None) -> Model:
    """Load the model saved in ``directory`` by its manifest's flavor.

    With ``expected_sha256`` the model file is checked first and a mismatch
    raises :class:`ArtifactMismatch` (a tampered or corrupted artifact).
    """
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    path = directory / manifest["file"]
    if expected_sha256 is not None:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise ArtifactMismatch(f"{path}: sha256 {actual} does not match {expected_sha256}")
    if manifest["flavor"] == "river":
        from services.common.models.river_model import RiverModel

        return RiverModel.load(path)
    if manifest["flavor"] == "torch":
        from services.common.models.torch_model import TorchModel

        return TorchModel.load(path)
    raise ValueError(f"{directory}: unknown model flavor {manifest['flavor']!r}")
