"""The run's pictures: loss curves, the confusion matrix and the ROC curve (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def _figure(path: Path, size: tuple[float, float]) -> Iterator[Any]:
    """One figure's axes; on leaving, the figure is laid out, saved to ``path`` and closed."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=size)
    try:
        yield axes
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def roc_curve(
    truth: Sequence[bool], score: Sequence[float] | npt.NDArray[np.float64]
) -> tuple[list[float], list[float]]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1).

    >>> roc_curve([False, False, True, True], [0.1, 0.4, 0.35, 0.8])
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    labels = np.asarray(truth, dtype=bool)
    values = np.asarray(score, dtype=np.float64)
    order = np.argsort(-values, kind="mergesort")
    labels, values = labels[order], values[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(values)), len(values) - 1]
    tp = np.cumsum(labels)[last_of_run]
    fp = np.cumsum(~labels)[last_of_run]
    tpr = np.r_[0.0, tp / max(1, labels.sum())]
    fpr = np.r_[0.0, fp / max(1, (~labels).sum())]
    return [float(v) for v in fpr], [float(v) for v in tpr]


def loss_curves(
    train_loss: list[float], val_loss: list[float], best_epoch: int, path: Path
) -> Path:
    with _figure(path, (6, 4)) as axes:
        epochs = range(1, len(train_loss) + 1)
        axes.plot(epochs, train_loss, label="train")
        axes.plot(epochs, val_loss, label="validation")
        if best_epoch:
            axes.axvline(best_epoch, linestyle="--", color="grey", label=f"best epoch {best_epoch}")
        axes.set(xlabel="epoch", ylabel="loss", title="Loss curves")
        axes.legend()
    return path


def confusion_matrix(matrix: list[list[int]], classes: Sequence[Any], path: Path) -> Path:
    counts = np.asarray(matrix)
    with _figure(path, (1.2 * len(classes) + 3, 1.2 * len(classes) + 2)) as axes:
        axes.imshow(counts, cmap="Blues")
        ticks = range(len(classes))
        axes.set_xticks(ticks, [str(c) for c in classes])
        axes.set_yticks(ticks, [str(c) for c in classes])
        for (i, j), count in np.ndenumerate(counts):
            axes.text(j, i, str(count), ha="center", va="center")
        axes.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test)")
    return path


def roc(
    truth: Sequence[Any],
    proba: npt.NDArray[np.float64],
    classes: Sequence[Any],
    positive: Any,
    path: Path,
) -> Path:
    """The positive class's ROC curve (binary) or one one-vs-rest curve per class."""
    shown = [positive] if positive is not None else list(classes)
    with _figure(path, (5, 5)) as axes:
        for label in shown:
            k = list(classes).index(label)
            fpr, tpr = roc_curve([t == label for t in truth], proba[:, k])
            axes.plot(fpr, tpr, label=f"class {label}")
        axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
        axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
        axes.legend()
    return path
