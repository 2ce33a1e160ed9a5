"""Loading a saved model by its manifest's flavor, each adapter imported only when needed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from services.common.models.protocol import MANIFEST, ArtifactMismatch, Model, sha256_of


def onnx_available() -> bool:
    """Whether onnxruntime is installed (found without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def load_model(
    directory: Path | str, expected_sha256: str | None = None, *, prefer_onnx: bool = False
) -> Model:
    """Load the model saved in ``directory`` by its manifest's flavor.

    With ``expected_sha256`` the model file is checked first and a mismatch
    raises :class:`ArtifactMismatch` (a tampered or corrupted artifact).
    With ``prefer_onnx``, a torch model that has an ONNX export answers
    through onnxruntime when it is installed: the export its file names as
    served (``onnx``, or ``int8`` when the use case asked), its own sha256,
    recorded in the checked torch file, checked too.
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

        if prefer_onnx and onnx_available():
            return TorchModel.load(path, runtime="served")
        return TorchModel.load(path)
    if manifest["flavor"] == "linear":
        from services.common.models.linear_model import LinearModel

        return LinearModel.load(path)
    if manifest["flavor"] == "tree":
        from services.common.models.tree_model import TreeModel

        return TreeModel.load(path)
    raise ValueError(f"{directory}: unknown model flavor {manifest['flavor']!r}")
