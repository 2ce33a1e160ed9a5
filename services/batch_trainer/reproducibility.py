"""Seeds and the device: same request, same data, same seed, same metrics, on CPU or CUDA."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels.

    ``warn_only`` keeps an op without a deterministic kernel (some CUDA ones)
    running with a warning rather than failing the training run.
    """
    # cuBLAS reads this when CUDA starts; it must be set for deterministic matmuls.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False  # autotuning picks kernels by timing


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given, else CUDA when ``torch.cuda.is_available()``, else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
