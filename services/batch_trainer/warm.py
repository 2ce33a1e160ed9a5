"""The trainer's fixed costs paid at start, not in the first training request.

A drift-triggered request is on the closed loop's clock (B8). Its first one
used to import torch, optuna, scikit-learn, MLflow, matplotlib and ONNX (tens
of seconds on a busy 2-core machine), open MLflow's store and the use cases'
experiments, and open the Feast store. :class:`Warmup` does all that in a
background thread at start; a request waits for it to finish first (so no
module is imported by two threads at once), and the health endpoint is live
meanwhile. A warm-up step that fails is logged and left to the request,
which fails or succeeds as it would have.
"""

from __future__ import annotations

import importlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from schemas.events import Window
from schemas.usecase import UseCase

logger = logging.getLogger(__name__)

MODULES = (
    "torch",
    "optuna",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "mlflow",
    "onnx",
    "onnxruntime",
    "onnxruntime.quantization",
    "torch.onnx",
    # torch.use_deterministic_algorithms (seed_everything, every run) imports it: 2.4 s of
    # CPU on the first request's clock otherwise (torch 2.13, after the modules above).
    "torch._inductor.config",
    "services.batch_trainer.pipeline",
    "services.batch_trainer.runs",
    "services.batch_trainer.export",
)


class Warmup:
    """One background pass over :data:`MODULES` and each step; :meth:`wait` joins it."""

    def __init__(self, steps: Mapping[str, Callable[[], object]]) -> None:
        self.steps = dict(steps)
        self.done: list[str] = []
        self.failed: dict[str, str] = {}
        self._thread = threading.Thread(target=self._run, name="warmup", daemon=True)

    def start(self) -> Warmup:
        self._thread.start()
        return self

    def wait(self) -> None:
        if self._thread.is_alive():
            logger.info("training request waits for the warm-up")
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        for name, step in self.steps.items():
            try:
                step()
                self.done.append(name)
            except Exception as exc:  # the request meets it again, with its own error handling
                self.failed[name] = f"{type(exc).__name__}: {exc}"
                logger.warning("warm-up step %s failed: %s", name, self.failed[name])
        logger.info("warm-up done in %.1f s: %s", time.monotonic() - started, ", ".join(self.done))


def import_all() -> None:
    for module in MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # an optional export backend: the export step says so itself
            logger.info("warm-up: %s not installed", module)


def pyplot() -> None:
    """matplotlib's Agg backend and its font cache (built on a machine's first use)."""
    from services.batch_trainer import plots

    with tempfile.TemporaryDirectory(prefix="driftline-warmup-") as scratch:
        plots.loss_curves([1.0, 0.5], [1.0, 0.6], 1, Path(scratch) / "loss.png")


def trainer_steps(
    served: Mapping[str, UseCase],
    home: Path,
    mlflow_uri: str | None,
    data_source: Callable[[UseCase, Window], object],
) -> dict[str, Callable[[], object]]:
    """The batch trainer's warm-up: imports, pyplot, MLflow's experiments, the data source.

    The data source is asked for an empty window (an hour from now): it opens
    its store and returns no rows.
    """
    from services.batch_trainer import runs
    from services.common import tracking

    def experiments() -> None:
        for spec in served.values():
            tracking.experiment_id(home, runs.experiment_name(spec), mlflow_uri)

    def data() -> None:
        later = datetime.now(UTC) + timedelta(hours=1)
        for spec in served.values():
            data_source(spec, Window(start=later, end=later))

    return {"imports": import_all, "pyplot": pyplot, "mlflow": experiments, "data": data}
