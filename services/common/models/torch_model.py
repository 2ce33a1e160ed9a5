"""The torch adapter: an MLP and the preprocessing it was trained with, in one file.

The batch trainer builds a :class:`TorchModel`; the promoter and the
inference service load it through :func:`services.common.models.load_model`
and call it like any other :class:`~services.common.models.protocol.Model`:
feature dicts in, classes, probabilities or numbers out. The file is written
with ``torch.save`` and holds only tensors and plain values, so it loads with
``weights_only=True`` (no pickled code runs on load), on the CPU by default.

The batch trainer may export the network to ONNX beside ``model.pt``
(:mod:`services.batch_trainer.export`); the torch file records each exported
file's sha256, so a loader that checked the torch file's sha256 can trust
an exported one it checks against that record. ``load(runtime="onnx")``
answers through onnxruntime (imported only then) with the same preprocessing;
``load(runtime="served")`` through the export the file names as served
(``serve``: the use case's ``models.batch.export.serve``, ``onnx`` unless it
says ``int8``), or torch when the file has no such export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Unpack

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from services.common.models.protocol import ArtifactMismatch, Flavor, save_model_file, sha256_of
from services.common.models.tabular import (
    Standardizer,
    TabularArguments,
    TabularModel,
    rows_to_matrix,
)

FILENAME = "model.pt"
FORMAT_VERSION = 1
FloatArray = npt.NDArray[np.float64]
Runtime = Literal["torch", "onnx", "int8"]
__all__ = ["MLPConfig", "Standardizer", "TorchModel", "build_mlp", "rows_to_matrix"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


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


class TorchModel(TabularModel):
    """A trained MLP with its preprocessing, behind driftline's model protocol.

    Classifiers output one logit per class in ``classes`` order; regressors
    one number, trained on the standardized target and scaled back here.
    """

    flavor: ClassVar[Flavor] = "torch"

    def __init__(
        self,
        *,
        config: MLPConfig,
        module: nn.Module,
        exports: dict[str, dict[str, Any]] | None = None,
        serve: Runtime = "onnx",
        **common: Unpack[TabularArguments],
    ) -> None:
        super().__init__(**common)
        self.exports = dict(exports or {})  # runtime -> {"file", "sha256", ...}
        self.serve: Runtime = serve  # the export load(runtime="served") answers through
        self.runtime: Runtime = "torch"
        self.session: Any = None  # an onnxruntime.InferenceSession when runtime != "torch"
        self.config = config
        self.module = module.eval()

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    # ---- arrays: what the trainer evaluates with ---------------------------------

    def forward_array(self, matrix: FloatArray) -> FloatArray:
        """Raw outputs (logits, or the standardized target) for a raw feature matrix."""
        if self.session is not None:
            feed = {"inputs": self.transform(matrix).astype(np.float32)}
            answer: FloatArray = np.asarray(self.session.run(None, feed)[0], dtype=np.float64)
            return answer
        module = self.module
        inputs = torch.as_tensor(self.transform(matrix), dtype=torch.float32, device=self.device)
        if module.training:  # a trainer between epochs; a served model is in eval already
            module.eval()
        with torch.inference_mode():
            outputs = module(inputs)
        result: FloatArray = outputs.cpu().numpy().astype(np.float64)
        return result

    def proba_array(self, matrix: FloatArray) -> FloatArray:
        """Class probabilities, one column per class in ``classes`` order."""
        self._require_classifier()
        logits = self.forward_array(matrix)  # softmax in numpy: no torch op for the ONNX path
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        result: FloatArray = exp / exp.sum(axis=1, keepdims=True)
        return result

    # ---- the model protocol: predictions in TabularModel --------------------------

    def save(self, directory: Path) -> Path:
        """Write ``model.pt`` and the manifest into ``directory``; return the model file."""
        parameters = {
            "config": asdict(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
        }
        state = self._state(FORMAT_VERSION, parameters, exports=self.exports, serve=self.serve)
        return save_model_file(
            directory, "torch", FILENAME, lambda path: torch.save(state, path), task=self.task,
            classes=self.classes, feature_names=self.feature_names,
            torch_version=torch.__version__, exports=self.exports, serve=self.serve,
        )  # fmt: skip

    @classmethod
    def load(
        cls,
        path: Path,
        device: str | torch.device = "cpu",
        runtime: Runtime | Literal["served"] = "torch",
    ) -> TorchModel:
        """Read a model written by :meth:`save`, onto ``device`` (the CPU unless told).

        With ``runtime="onnx"`` (or ``"int8"``, or ``"served"``: the one the
        file names) and that export recorded, the exported file beside ``path``
        is checked against its recorded sha256 (:class:`ArtifactMismatch` when
        it differs) and answers the predictions.
        """
        state = torch.load(Path(path), map_location=device, weights_only=True)
        arguments = cls._common_arguments(state, path, FORMAT_VERSION, "torch")
        config = MLPConfig(**state["config"])
        module = build_mlp(config)
        module.load_state_dict(state["state_dict"])
        exports = state.get("exports") or {}
        serve = state.get("serve", "onnx")  # files written before serve existed: onnx
        model = cls(
            config=config, module=module.to(device), exports=exports, serve=serve, **arguments
        )
        wanted = serve if runtime == "served" else runtime
        if wanted != "torch" and wanted in model.exports:
            model.use_export(Path(path).parent, wanted)
        return model

    def use_export(self, directory: Path, runtime: Runtime) -> None:
        """Answer through the exported ONNX file in ``directory`` (its sha256 checked first)."""
        import onnxruntime

        record = self.exports[runtime]
        file = Path(directory) / record["file"]
        actual = sha256_of(file)
        if actual != record["sha256"]:
            raise ArtifactMismatch(f"{file}: sha256 {actual} does not match {record['sha256']}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # a small MLP: one thread answers fastest
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(file), options, providers=["CPUExecutionProvider"]
        )
        self.runtime = runtime
