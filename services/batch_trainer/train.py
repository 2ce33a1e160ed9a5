"""The training loop: one MLP fit with early stopping on the validation loss.

Adam or AdamW with weight decay, a plateau learning-rate schedule, gradient
clipping, class weights for imbalanced labels, and the best epoch's weights
restored at the end. Inputs are already preprocessed (standardized with the
training part's statistics); the loop never sees the test rows.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from schemas.usecase import BatchModelSpec, Task
from services.common.models.torch_model import MLPConfig, build_mlp

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, float], None]


class Fit(Protocol):
    """One fit of a training run's data (:func:`fit_mlp` with its arrays, task, seed and device)."""

    def __call__(self, *, params: HyperParams, on_epoch: EpochCallback | None = None) -> FitResult:
        """Fit with ``params``; ``on_epoch`` as :func:`fit_mlp` calls it."""


@dataclass(frozen=True)
class HyperParams:
    """Everything that shapes one fit; the spec's values unless tuning chose others."""

    hidden_layers: list[int] = field(default_factory=lambda: [64, 32])
    activation: str = "relu"
    dropout: float = 0.1
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 50
    patience: int = 5
    grad_clip: float | None = 1.0
    class_weights: bool = True

    @classmethod
    def from_spec(cls, spec: BatchModelSpec) -> HyperParams:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in spec.model_dump().items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    """The fitted network (best epoch restored) and its loss curves."""

    module: nn.Module
    config: MLPConfig
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    best_val_loss: float

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)


def balanced_class_weights(
    target: npt.NDArray[np.int64], n_classes: int
) -> npt.NDArray[np.float64]:
    """``n / (k * count_c)`` per class (scikit-learn's 'balanced'); an absent class weighs 0.

    >>> balanced_class_weights(np.array([0, 0, 0, 1]), 2).tolist()
    [0.6666666666666666, 2.0]
    """
    counts = np.bincount(target, minlength=n_classes).astype(np.float64)
    weights = np.zeros(n_classes)
    present = counts > 0
    weights[present] = len(target) / (present.sum() * counts[present])
    return weights


def fit_mlp(
    x_train: npt.NDArray[np.float64],
    y_train: npt.NDArray[Any],
    x_val: npt.NDArray[np.float64],
    y_val: npt.NDArray[Any],
    *,
    task: Task,
    n_outputs: int,
    params: HyperParams,
    seed: int,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Train until the validation loss stops improving for ``patience`` epochs.

    ``on_epoch(epoch, val_loss)`` is called after each epoch (the tuner
    reports to Optuna and may raise ``TrialPruned`` from it).
    """
    torch.manual_seed(seed)
    shuffle = torch.Generator(device="cpu").manual_seed(seed)
    config = MLPConfig(
        n_inputs=x_train.shape[1],
        n_outputs=n_outputs,
        hidden_layers=list(params.hidden_layers),
        activation=params.activation,
        dropout=params.dropout,
    )
    module = build_mlp(config).to(device)
    criterion = _criterion(task, y_train, n_outputs, params.class_weights, device)
    xt, yt = _tensors(x_train, y_train, task, device)
    xv, yv = _tensors(x_val, y_val, task, device)
    optimizer_type = torch.optim.AdamW if params.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_type(
        module.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, patience=max(1, params.patience // 2)
    )
    train_curve: list[float] = []
    val_curve: list[float] = []
    best_state = copy.deepcopy(module.state_dict())
    best_epoch, best_loss, stale = 0, float("inf"), 0
    for epoch in range(1, params.max_epochs + 1):
        module.train()
        order = torch.randperm(len(xt), generator=shuffle).to(device)
        total = 0.0
        for start in range(0, len(xt), params.batch_size):
            batch = order[start : start + params.batch_size]
            optimizer.zero_grad()
            loss = criterion(module(xt[batch]), yt[batch])
            loss.backward()
            if params.grad_clip is not None:
                nn.utils.clip_grad_norm_(module.parameters(), params.grad_clip)
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        train_curve.append(total / len(xt))
        val_loss = _evaluate(module, criterion, xv, yv)
        val_curve.append(val_loss)
        schedule.step(val_loss)
        if val_loss < best_loss - 1e-7:
            best_epoch, best_loss, stale = epoch, val_loss, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            stale += 1
        if on_epoch is not None:
            on_epoch(epoch, val_loss)
        if stale >= params.patience:
            logger.debug("early stop epoch=%d best_epoch=%d", epoch, best_epoch)
            break
    module.load_state_dict(best_state)
    module.eval()
    return FitResult(module, config, train_curve, val_curve, best_epoch, best_loss)


def evaluate_loss(
    result: FitResult,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[Any],
    *,
    task: Task,
    y_train: npt.NDArray[Any],
    class_weights: bool,
) -> float:
    """The loss of a fitted network on ``(x, y)`` with the criterion it was trained with."""
    device = next(result.module.parameters()).device
    criterion = _criterion(task, y_train, result.config.n_outputs, class_weights, device)
    xs, ys = _tensors(x, y, task, device)
    return _evaluate(result.module, criterion, xs, ys)


def _criterion(
    task: Task, y_train: npt.NDArray[Any], n_outputs: int, class_weights: bool, device: torch.device
) -> nn.Module:
    if task == "regression":
        return nn.MSELoss()
    weight = None
    if class_weights:
        weights = balanced_class_weights(y_train.astype(np.int64), n_outputs)
        weight = torch.as_tensor(weights, dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight)


def _tensors(
    x: npt.NDArray[np.float64], y: npt.NDArray[Any], task: Task, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    features = torch.as_tensor(x, dtype=torch.float32, device=device)
    if task == "classification":
        return features, torch.as_tensor(y, dtype=torch.long, device=device)
    return features, torch.as_tensor(y, dtype=torch.float32, device=device).reshape(-1, 1)


def _evaluate(module: nn.Module, criterion: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    module.eval()
    with torch.no_grad():
        return float(criterion(module(x), y))
