"""Running statistics for imputation, with plain-JSON state.

Small and exact rather than river's: their state must round-trip through a
JSON checkpoint, and a restored preparer must impute exactly as before.

>>> mean = RunningMean()
>>> for x in (1.0, 2.0, 6.0):
...     mean.update(x)
>>> mean.value()
3.0
>>> RunningMean.from_state(mean.state()).value()
3.0
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Protocol


class Statistic(Protocol):
    """What the preparer needs of a running statistic."""

    def update(self, value: Any) -> None: ...

    def value(self) -> Any:
        """The current estimate, or None before any update."""

    def state(self) -> dict[str, Any]: ...


class RunningMean:
    """The mean of every value seen (Welford's update, numerically stable)."""

    def __init__(self, count: int = 0, mean: float = 0.0) -> None:
        self.count = count
        self.mean = mean

    def update(self, value: Any) -> None:
        self.count += 1
        self.mean += (float(value) - self.mean) / self.count

    def value(self) -> float | None:
        return self.mean if self.count else None

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunningMean:
        return cls(int(state["count"]), float(state["mean"]))


class RollingMedian:
    """The median of the last ``window`` values: robust, and follows a drifting stream.

    >>> median = RollingMedian(window=3)
    >>> for x in (10, 1, 2, 3):
    ...     median.update(x)
    >>> median.value()
    2.0
    """

    def __init__(self, window: int = 501, values: list[float] | None = None) -> None:
        self.window = window
        self.values: deque[float] = deque(values or [], maxlen=window)

    def update(self, value: Any) -> None:
        self.values.append(float(value))

    def value(self) -> float | None:
        return float(statistics.median(self.values)) if self.values else None

    def state(self) -> dict[str, Any]:
        return {"window": self.window, "values": list(self.values)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RollingMedian:
        return cls(int(state["window"]), [float(v) for v in state["values"]])


class MostFrequent:
    """The most frequent value (by its JSON-safe key); ties go to the first seen.

    At most ``max_keys`` distinct values are counted, so an open category
    cannot grow the state without bound.

    >>> mode = MostFrequent()
    >>> for x in ("a", "b", "b"):
    ...     mode.update(x)
    >>> mode.value()
    'b'
    """

    def __init__(
        self, counts: dict[str, int] | None = None, originals: dict[str, Any] | None = None
    ) -> None:
        self.counts: Counter[str] = Counter(counts or {})
        self.originals: dict[str, Any] = dict(originals or {})

    max_keys = 1000

    def update(self, value: Any) -> None:
        key = repr(value)
        if key not in self.counts and len(self.counts) >= self.max_keys:
            return
        self.counts[key] += 1
        self.originals.setdefault(key, value)

    def value(self) -> Any:
        if not self.counts:
            return None
        key = max(self.counts, key=lambda k: self.counts[k])  # first maximum wins
        return self.originals[key]

    def state(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "originals": dict(self.originals)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MostFrequent:
        return cls(dict(state["counts"]), dict(state["originals"]))


def new_statistic(kind: str) -> Statistic | None:
    """The running statistic an ``impute`` strategy reads, or None if it needs none."""
    makers = {"mean": RunningMean, "median": RollingMedian, "most_frequent": MostFrequent}
    maker = makers.get(kind)
    return maker() if maker else None


def restore_statistic(kind: str, state: dict[str, Any]) -> Statistic:
    """A statistic rebuilt from :meth:`Statistic.state`."""
    restorers: dict[str, Callable[[dict[str, Any]], Statistic]] = {
        "mean": RunningMean.from_state,
        "median": RollingMedian.from_state,
        "most_frequent": MostFrequent.from_state,
    }
    return restorers[kind](state)
