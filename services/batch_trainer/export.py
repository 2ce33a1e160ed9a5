"""The MLP (and a linear winner) exported to ONNX (``torch.onnx``), the MLP optionally as int8.

The exported graph is the network alone: it takes the standardized inputs
(float32, any number of rows) and answers the raw outputs (logits, or the
standardized target); the preprocessing stays in the torch file, which
records each export's file name, sha256 and size (``TorchModel.exports``).
Dynamic int8 quantization stores the weights as 8-bit integers; its effect
on the test metrics is measured here and reported with the candidate.

A linear winner is exported the same way, as one ``torch.nn.Linear`` layer
over the standardized inputs (:func:`export_linear`), so the file runs
wherever ONNX does; inference keeps answering it with numpy, which is
faster for one dot product, and the candidate records the file and sha256.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from schemas.usecase import ExportSpec
from services.common.models.linear_model import LinearModel
from services.common.models.protocol import sha256_of
from services.common.models.torch_model import TorchModel

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OPSET = 17


def export_onnx(model: TorchModel, directory: Path) -> Path:
    """Write the network as ``directory/model.onnx`` with a dynamic row axis."""
    return _write_onnx(model.module.to("cpu").eval(), model.config.n_inputs, directory)


def export_linear(model: LinearModel, directory: Path) -> dict[str, dict[str, Any]]:
    """A linear model's logits (or standardized target) as ``model.onnx``; its record."""
    weights = torch.as_tensor(model.weights, dtype=torch.float32)
    layer = torch.nn.Linear(weights.shape[1], weights.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weights)
        layer.bias.copy_(torch.as_tensor(model.intercepts, dtype=torch.float32))
    path = _write_onnx(layer.eval(), weights.shape[1], directory)
    return {"onnx": record(path)}


def _write_onnx(module: torch.nn.Module, n_inputs: int, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ONNX_FILE
    example = torch.zeros((2, n_inputs), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["inputs"],
            output_names=["outputs"],
            dynamic_axes={"inputs": {0: "rows"}, "outputs": {0: "rows"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def quantize_int8(onnx_path: Path, directory: Path) -> Path:
    """Dynamic int8 quantization of the exported graph (weights int8, activations at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = directory / INT8_FILE
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its advice to pre-process first goes to the root logger
    try:
        quantize_dynamic(str(onnx_path), str(path), weight_type=QuantType.QInt8)
    finally:
        quiet.setLevel(level)
    return path


def record(path: Path, **extra: Any) -> dict[str, Any]:
    """What the torch file and the candidate say about an exported file."""
    return {
        "file": path.name,
        "sha256": sha256_of(path),
        "size_bytes": path.stat().st_size,
        **extra,
    }


def export_model(
    model: TorchModel,
    directory: Path,
    spec: ExportSpec,
    score: Any,
    test_x: npt.NDArray[np.float64],
) -> dict[str, dict[str, Any]]:
    """Export as the spec asks; record the files on ``model.exports`` and return the records.

    ``score(model, matrix)`` gives a model's test metrics; the int8 export's
    change in each (int8 minus torch) is recorded as ``metric_change``.
    Nothing is exported (``{}``) when the spec turns ONNX off. The model
    records which export inference serves (``spec.serve``).
    """
    if not spec.onnx:
        return {}
    model.serve = spec.serve
    onnx_path = export_onnx(model, directory)
    model.exports = {"onnx": record(onnx_path)}
    if spec.quantize == "int8":
        int8_path = quantize_int8(onnx_path, directory)
        model.exports["int8"] = record(int8_path)
        reference = score(model, test_x)
        quantized = TorchModel(
            task=model.task, feature_names=model.feature_names, config=model.config,
            module=model.module, preprocessing=model.preprocessing, classes=model.classes,
            target_mean=model.target_mean, target_scale=model.target_scale,
            exports=model.exports, serve=model.serve,
        )  # fmt: skip
        quantized.use_export(directory, "int8")
        measured = score(quantized, test_x)
        model.exports["int8"]["metric_change"] = {
            name: float(measured[name] - reference[name])
            for name in sorted(set(measured) & set(reference))
        }
    logger.info(
        "exported %s",
        ", ".join(f"{k}={v['file']} ({v['size_bytes']} bytes)" for k, v in model.exports.items()),
    )
    return model.exports
