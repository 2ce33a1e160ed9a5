"""Train / validation / test splits without leakage, and the folds of cross-validation.

Temporal use cases split in time order: everything the model learns from
happened strictly before everything it is validated on, which happened
strictly before the test rows. Rows sharing a timestamp never straddle a
boundary. Non-temporal use cases split at random, stratified by class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.usecase import SplitSpec

Indices = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """Row positions of each part."""

    train: Indices
    validation: Indices
    test: Indices

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def temporal_split(timestamps: npt.NDArray[Any], shares: SplitSpec) -> Split:
    """Cut time-ordered rows at the train and train + validation shares.

    A cut that falls inside a run of equal timestamps moves forward past it,
    so every train time is earlier than every validation time, and so on.

    >>> t = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    >>> temporal_split(t, SplitSpec()).sizes()
    {'train': 7, 'validation': 2, 'test': 1}
    >>> ties = np.array([1, 1, 1, 2, 2, 3, 4, 5, 6, 7])
    >>> temporal_split(ties, SplitSpec(train=0.2, validation=0.3, test=0.5)).sizes()
    {'train': 3, 'validation': 2, 'test': 5}
    """
    if np.any(np.diff(timestamps) < 0):
        raise ValueError("temporal_split needs rows in time order")
    n = len(timestamps)
    first = _advance_past_ties(timestamps, round(n * shares.train))
    second = _advance_past_ties(
        timestamps, max(first, round(n * (shares.train + shares.validation)))
    )
    positions = np.arange(n, dtype=np.int64)
    return Split(positions[:first], positions[first:second], positions[second:])


def _advance_past_ties(timestamps: npt.NDArray[Any], cut: int) -> int:
    while 0 < cut < len(timestamps) and timestamps[cut] == timestamps[cut - 1]:
        cut += 1
    return cut


def stratified_split(
    classes: npt.NDArray[Any] | None, n: int, shares: SplitSpec, seed: int
) -> Split:
    """A seeded random split that keeps each class's share in every part (``classes`` per row).

    Without classes (regression) it is a plain seeded shuffle.

    >>> y = np.array([0] * 80 + [1] * 20)
    >>> split = stratified_split(y, 100, SplitSpec(), seed=1)
    >>> split.sizes(), int(y[split.test].sum()), int(y[split.validation].sum())
    ({'train': 70, 'validation': 20, 'test': 10}, 2, 4)
    """
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n)]
        if classes is None
        else [np.flatnonzero(classes == c) for c in np.unique(classes)]
    )
    parts: list[list[npt.NDArray[np.int64]]] = [[], [], []]
    for group in groups:
        shuffled = rng.permutation(group)
        first = round(len(group) * shares.train)
        second = round(len(group) * (shares.train + shares.validation))
        for k, piece in enumerate((shuffled[:first], shuffled[first:second], shuffled[second:])):
            parts[k].append(piece)
    train, validation, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return Split(train, validation, test)


def cv_folds(
    n: int, k: int, *, temporal: bool, classes: npt.NDArray[Any] | None, seed: int
) -> list[tuple[Indices, Indices]]:
    """``k`` (fit, evaluate) pairs over ``n`` rows.

    Temporal data gets expanding-window folds (fit on the past, evaluate on
    the next chunk, never on earlier rows); otherwise k-fold, stratified when
    ``classes`` is given.

    >>> [(len(a), len(b)) for a, b in cv_folds(12, 3, temporal=True, classes=None, seed=0)]
    [(3, 3), (6, 3), (9, 3)]
    >>> [(len(a), len(b)) for a, b in cv_folds(12, 3, temporal=False, classes=None, seed=0)]
    [(8, 4), (8, 4), (8, 4)]
    """
    positions = np.arange(n, dtype=np.int64)
    if temporal:
        chunks = np.array_split(positions, k + 1)
        return [(np.concatenate(chunks[: i + 1]), chunks[i + 1]) for i in range(k)]
    rng = np.random.default_rng(seed)
    groups = (
        [positions] if classes is None else [positions[classes == c] for c in np.unique(classes)]
    )
    fold_of = np.empty(n, dtype=np.int64)
    for group in groups:
        shuffled = rng.permutation(group)
        fold_of[shuffled] = np.arange(len(shuffled)) % k
    return [(positions[fold_of != i], positions[fold_of == i]) for i in range(k)]
