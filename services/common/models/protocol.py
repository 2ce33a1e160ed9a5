"""The model protocol: what trainers produce and the promoter and inference consume.

A model takes feature rows (``dict`` of feature name to number, the output of
the shared transforms) and answers predictions. It saves to one file, whose
sha256 travels with every candidate and promotion event, and loads back by
its flavor. Adapters: ``river_model.RiverModel`` (online) and
``torch_model.TorchModel`` (batch); torch is imported only by the latter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

Flavor = Literal["river", "torch"]
FeatureDict = dict[str, Any]
MANIFEST = "driftline-model.json"


@runtime_checkable
class Model(Protocol):
    """A trained model behind driftline's common interface."""

    flavor: ClassVar[Flavor]
    task: Literal["classification", "regression"]
    classes: list[Any] | None

    def predict(self, rows: Sequence[FeatureDict]) -> list[Any]:
        """One prediction per row: a class label or a number."""

    def predict_proba(self, rows: Sequence[FeatureDict]) -> list[dict[Any, float]]:
        """Class probabilities per row (classifiers only)."""

    def save(self, directory: Path) -> Path:
        """Write the model into ``directory``; return the one file that holds it."""

    @classmethod
    def load(cls, path: Path) -> Model:
        """Read a model written by :meth:`save`."""


def sha256_of(path: Path | str) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, flavor: Flavor, filename: str, **extra: Any) -> None:
    """Record which adapter reads ``filename``, so :func:`load_model` can dispatch."""
    manifest = {"flavor": flavor, "file": filename, **extra}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))


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


class ArtifactMismatch(ValueError):
    """A model file whose sha256 is not the one its events promised."""
