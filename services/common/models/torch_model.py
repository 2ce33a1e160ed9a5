"""The torch adapter: an MLP and the preprocessing it was trained with, in one file.

The batch trainer builds a :class:`TorchModel`; the promoter and the
inference service load it through :func:`services.common.models.load_model`
and call it like any other :class:`~services.common.models.protocol.Model`:
feature dicts in, classes, probabilities or numbers out. The file is written
with ``torch.save`` and holds only tensors and plain values, so it loads with
``weights_only=True`` (no pickled code runs on load), on the CPU by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from schemas.usecase import Task
from services.common.models.protocol import FeatureDict, Flavor, write_manifest

FILENAME = "model.pt"
FORMAT_VERSION = 1
FloatArray = npt.NDArray[np.float64]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


def rows_to_matrix(rows: Sequence[FeatureDict], feature_names: Sequence[str]) -> FloatArray:
    """Feature dicts as a float matrix in ``feature_names`` order; missing or None is NaN.

    >>> rows_to_matrix([{"a": 1, "b": True}, {"a": None}], ["a", "b"]).tolist()
    [[1.0, 1.0], [nan, nan]]
    """
    matrix = np.full((len(rows), len(feature_names)), np.nan, dtype=np.float64)
    for i, row in enumerate(rows):
        for j, name in enumerate(feature_names):
            value = row.get(name)
            if value is not None:
                matrix[i, j] = float(value)
    return matrix


@dataclass(frozen=True)
class Standardizer:
    """Median imputation then standardization, with statistics of the training part only.

    >>> s = Standardizer.fit(np.array([[1.0, 5.0], [3.0, np.nan], [np.nan, 5.0]]))
    >>> s.median, s.mean, s.scale
    ([2.0, 5.0], [2.0, 5.0], [0.816496580927726, 1.0])
    >>> s.transform(np.array([[np.nan, 7.0]])).tolist()
    [[0.0, 2.0]]
    """

    median: list[float]
    mean: list[float]
    scale: list[float]

    @classmethod
    def fit(cls, matrix: FloatArray) -> Standardizer:
        """Statistics of ``matrix``: an all-missing column imputes 0, a constant one scales by 1."""
        median = np.nan_to_num(_nanmedian(matrix), nan=0.0)
        imputed = np.where(np.isnan(matrix), median, matrix)
        mean = imputed.mean(axis=0)
        scale = imputed.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls([float(v) for v in median], [float(v) for v in mean], [float(v) for v in scale])

    def transform(self, matrix: FloatArray) -> FloatArray:
        imputed = np.where(np.isnan(matrix), np.asarray(self.median), matrix)
        result: FloatArray = (imputed - np.asarray(self.mean)) / np.asarray(self.scale)
        return result


def _nanmedian(matrix: FloatArray) -> FloatArray:
    """Column medians ignoring NaN; NaN for an all-missing column (without numpy's warning)."""
    medians = np.full(matrix.shape[1], np.nan)
    for j in range(matrix.shape[1]):
        column = matrix[:, j][~np.isnan(matrix[:, j])]
        if column.size:
            medians[j] = float(np.median(column))
    return medians


@dataclass(frozen=True)
class MLPConfig:
    """The shape of the network: what :func:`build_mlp` needs to rebuild it."""

    n_inputs: int
    n_outputs: int
    hidden_layers: list[int] = field(default_factory=lambda: [64, 32])
    activation: str = "relu"
    dropout: float = 0.0


def build_mlp(config: MLPConfig) -> nn.Sequential:
    """Linear, activation and dropout per hidden layer, then a linear output layer.

    >>> build_mlp(MLPConfig(n_inputs=3, n_outputs=2, hidden_layers=[4], dropout=0.1))
    Sequential(
      (0): Linear(in_features=3, out_features=4, bias=True)
      (1): ReLU()
      (2): Dropout(p=0.1, inplace=False)
      (3): Linear(in_features=4, out_features=2, bias=True)
    )
    """
    layers: list[nn.Module] = []
    width = config.n_inputs
    for hidden in config.hidden_layers:
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[config.activation]()]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = hidden
    layers.append(nn.Linear(width, config.n_outputs))
    return nn.Sequential(*layers)


class TorchModel:
    """A trained MLP with its preprocessing, behind driftline's model protocol.

    Classifiers output one logit per class in ``classes`` order; regressors
    one number, trained on the standardized target and scaled back here.
    """

    flavor: ClassVar[Flavor] = "torch"

    def __init__(
        self,
        *,
        task: Task,
        feature_names: Sequence[str],
        config: MLPConfig,
        module: nn.Module,
        preprocessing: Standardizer,
        classes: Sequence[Any] | None = None,
        target_mean: float = 0.0,
        target_scale: float = 1.0,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if task == "classification" and not classes:
            raise ValueError("a classifier needs its classes")
        self.task: Task = task
        self.feature_names = list(feature_names)
        self.config = config
        self.module = module.eval()
        self.preprocessing = preprocessing
        self.classes: list[Any] | None = list(classes) if classes is not None else None
        self.target_mean = target_mean
        self.target_scale = target_scale
        self.metadata = dict(metadata or {})

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    # ---- arrays: what the trainer evaluates with ---------------------------------

    def transform(self, matrix: FloatArray) -> FloatArray:
        """Raw feature matrix to the network's standardized inputs."""
        return self.preprocessing.transform(matrix)

    def forward_array(self, matrix: FloatArray) -> FloatArray:
        """Raw outputs (logits, or the standardized target) for a raw feature matrix."""
        inputs = torch.as_tensor(self.transform(matrix), dtype=torch.float32, device=self.device)
        self.module.eval()
        with torch.no_grad():
            outputs = self.module(inputs)
        result: FloatArray = outputs.cpu().numpy().astype(np.float64)
        return result

    def proba_array(self, matrix: FloatArray) -> FloatArray:
        """Class probabilities, one column per class in ``classes`` order."""
        self._require_classifier()
        logits = torch.as_tensor(self.forward_array(matrix))
        result: FloatArray = torch.softmax(logits, dim=1).numpy()
        return result

    def predict_array(self, matrix: FloatArray) -> list[Any]:
        """Predicted classes or numbers for a raw feature matrix."""
        if self.task == "classification":
            assert self.classes is not None
            winners = self.proba_array(matrix).argmax(axis=1)
            return [self.classes[int(k)] for k in winners]
        outputs = self.forward_array(matrix)[:, 0]
        return [float(v) for v in outputs * self.target_scale + self.target_mean]

    # ---- the model protocol ------------------------------------------------------

    def predict(self, rows: Sequence[FeatureDict]) -> list[Any]:
        return self.predict_array(rows_to_matrix(rows, self.feature_names))

    def predict_proba(self, rows: Sequence[FeatureDict]) -> list[dict[Any, float]]:
        self._require_classifier()
        assert self.classes is not None
        probabilities = self.proba_array(rows_to_matrix(rows, self.feature_names))
        return [dict(zip(self.classes, map(float, row), strict=True)) for row in probabilities]

    def save(self, directory: Path) -> Path:
        """Write ``model.pt`` and the manifest into ``directory``; return the model file."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / FILENAME
        state = {
            "format": FORMAT_VERSION,
            "task": self.task,
            "classes": self.classes,
            "feature_names": self.feature_names,
            "config": asdict(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "preprocessing": asdict(self.preprocessing),
            "target": {"mean": self.target_mean, "scale": self.target_scale},
            "metadata": self.metadata,
        }
        torch.save(state, path)
        write_manifest(
            directory,
            "torch",
            FILENAME,
            task=self.task,
            classes=self.classes,
            feature_names=self.feature_names,
            torch_version=torch.__version__,
        )
        return path

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu") -> TorchModel:
        """Read a model written by :meth:`save`, onto ``device`` (the CPU unless told)."""
        state = torch.load(Path(path), map_location=device, weights_only=True)
        if state.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unknown torch model format {state.get('format')!r}")
        config = MLPConfig(**state["config"])
        module = build_mlp(config)
        module.load_state_dict(state["state_dict"])
        return cls(
            task=state["task"],
            feature_names=state["feature_names"],
            config=config,
            module=module.to(device),
            preprocessing=Standardizer(**state["preprocessing"]),
            classes=state["classes"],
            target_mean=float(state["target"]["mean"]),
            target_scale=float(state["target"]["scale"]),
            metadata=state["metadata"],
        )

    def _require_classifier(self) -> None:
        if self.task != "classification":
            raise TypeError("predict_proba: a regressor has no class probabilities")
