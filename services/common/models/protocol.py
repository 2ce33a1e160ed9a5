"""The model protocol: what trainers produce and the promoter and inference consume.

A model takes feature rows (``dict`` of feature name to number, the output of
the shared transforms) and answers predictions. It saves to one file, whose
sha256 travels with every candidate and promotion event, and loads back by
its flavor. Adapters: ``river_model.RiverModel`` (online), ``torch_model.TorchModel``,
``linear_model.LinearModel`` and ``tree_model.TreeModel`` (batch); torch is imported
only by the torch one, scikit-learn only when a tree model is read.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

Flavor = Literal["river", "torch", "linear", "tree"]
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


def save_model_file(
    directory: Path, flavor: Flavor, filename: str, write: Callable[[Path], object], **extra: Any
) -> Path:
    """Write a model's file with ``write`` into ``directory`` beside its manifest; return the file.

    The manifest records which adapter reads ``filename``, so :func:`load_model`
    can dispatch, and ``extra`` (task, classes, versions) for people.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    write(path)
    manifest = {"flavor": flavor, "file": filename, **extra}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    return path


T = TypeVar("T")


def read_pickle(path: Path, expected: type[T]) -> T:
    """The object a model's pickle holds, refused unless it is an ``expected``.

    Only a file whose sha256 the caller checked (:func:`load_model`'s
    ``expected_sha256``) should be read: unpickling runs code.
    """
    held = pickle.loads(Path(path).read_bytes())
    if not isinstance(held, expected):
        raise TypeError(f"{path}: holds a {type(held).__name__}, not a {expected.__name__}")
    return held


class ArtifactMismatch(ValueError):
    """A model file whose sha256 is not the one its events promised."""
