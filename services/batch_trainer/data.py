"""The training set: where it comes from, which window it covers, and whether it is enough.

The data source is injected (:data:`TrainingData`): the service wires it to
the Feast offline store (a point-in-time join of features and labels); tests
pass frames built from river's generators. A frame has one column per
feature name, ``label``, ``event_timestamp``, ``event_id`` and ``entity_id``;
``frame.attrs["feature_views"]`` may name the Feast feature views it came from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from schemas.events import Window
from schemas.usecase import UseCase
from services.batch_trainer.errors import NotEnoughData, TrainingRefused

logger = logging.getLogger(__name__)

TrainingData = Callable[[UseCase, Window], pd.DataFrame]
# A cheap count of the labelled rows a window holds, at least what the source returns.
RowCount = Callable[[UseCase, Window], int]
LABEL = "label"
TIMESTAMP = "event_timestamp"
EVENT_ID = "event_id"
ENTITY_ID = "entity_id"


def resolve_window(spec: UseCase, requested: Window | None, now: datetime) -> Window:
    """The data window to train on: the request's, completed by the spec's default.

    The end defaults to ``now`` (the request's time, so replaying a request
    asks for the same data); the start to ``end - window_seconds`` when the
    spec sets a window length, else open.

    >>> from datetime import UTC
    >>> spec = UseCase.model_validate({"name": "toy", "task": "regression",
    ...     "fields": {"x": {"type": "float"}}, "features": [{"kind": "passthrough", "field": "x"}],
    ...     "models": {"batch": {"window_seconds": 3600}}})
    >>> w = resolve_window(spec, None, datetime(2026, 1, 1, 12, tzinfo=UTC))
    >>> w.start.hour, w.end.hour, w.rows
    (11, 12, None)
    """
    requested = requested or Window()
    end = requested.end or now
    start = requested.start
    seconds = spec.models.batch.window_seconds
    if start is None and seconds is not None:
        start = end - timedelta(seconds=seconds)
    return Window(start=start, end=end, rows=requested.rows)


class ArrivalPace:
    """How long a request waiting for ``needed`` rows sleeps before it counts again.

    The interval, or less when the rows seen arriving will make up what is
    missing sooner (at least ``least``): a drift request starts training when
    the data is there, not up to an interval later. The rate is the one seen
    since the first count; at the first count, the rows found over the time
    since the window began (``elapsed``, when the window has a start), so a
    request that comes late, most of its rows there already, does not sleep a
    whole interval past the rest.

    >>> pace = ArrivalPace(needed=300, interval=2.0)
    >>> pace.wait(0, at=10.0)  # nothing seen arriving yet: the interval
    2.0
    >>> pace.wait(100, at=12.0)  # 50 rows/s, 200 to go: 4 s, at most the interval
    2.0
    >>> round(pace.wait(290, at=16.0), 3)  # 10 to go at 48.3 rows/s
    0.207
    >>> pace.wait(299, at=16.3)  # one to go: at least ``least``
    0.1
    >>> ArrivalPace(needed=300, interval=2.0).wait(250, at=5.0, elapsed=5.0)  # 50 at 50/s
    1.0
    >>> ArrivalPace(needed=300, interval=2.0).wait(100, at=5.0, elapsed=2.0)
    2.0
    """

    def __init__(self, needed: int, interval: float, least: float = 0.1) -> None:
        self.needed = needed
        self.interval = interval
        self.least = least
        self._first: tuple[float, int] | None = None

    def wait(self, found: int, at: float, elapsed: float | None = None) -> float:
        if self._first is None:
            self._first = (at, found)
            if elapsed is None or elapsed <= 0 or found <= 0:
                return self.interval
            return self._until(found, found / elapsed)
        since, before = self._first
        if found <= before or at <= since:
            return self.interval
        return self._until(found, (found - before) / (at - since))

    def _until(self, found: int, rate: float) -> float:
        return min(self.interval, max(self.least, (self.needed - found) / rate))


@dataclass(frozen=True)
class DataProfile:
    """What the trainer saw before training: reported in the run and the logs."""

    rows: int
    dropped_unlabelled: int
    dropped_unknown_label: int
    label_distribution: dict[str, float]
    missing_share: dict[str, float]
    first_timestamp: str | None
    last_timestamp: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "dropped_unlabelled": self.dropped_unlabelled,
            "dropped_unknown_label": self.dropped_unknown_label,
            "label_distribution": self.label_distribution,
            "missing_share": self.missing_share,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
        }


@dataclass(frozen=True)
class PreparedData:
    """The labelled rows of the window, time-ordered, as arrays.

    ``features`` is the raw feature matrix (NaN where missing); ``target``
    holds class indices into ``classes`` (classification) or numbers.
    """

    features: npt.NDArray[np.float64]
    target: npt.NDArray[Any]
    timestamps: npt.NDArray[np.int64]
    event_ids: list[str]
    feature_names: list[str]
    classes: list[Any] | None
    profile: DataProfile
    feature_views: list[str] = field(default_factory=list)


def prepare(spec: UseCase, frame: pd.DataFrame, window: Window) -> PreparedData:
    """Check, filter to ``window``, order by time and profile the frame; refuse bad columns."""
    names = spec.feature_names()
    missing_columns = [c for c in [*names, LABEL, TIMESTAMP] if c not in frame.columns]
    if missing_columns:
        raise TrainingRefused(f"{spec.name}: the training data lacks columns {missing_columns}")
    frame = _in_window(frame, window)
    labelled = frame[frame[LABEL].notna()]
    dropped_unlabelled = len(frame) - len(labelled)
    classes = list(spec.label.classes or []) if spec.task == "classification" else None
    # Labels are text in the offline store ("1", "True"): the spec's class rule reads them.
    if classes is not None:
        index: dict[Any, int] = {c: i for i, c in enumerate(classes)}
        codes = labelled[LABEL].map(lambda v: index.get(spec.class_of(v), -1))
        known = labelled[codes >= 0]
        target: npt.NDArray[Any] = codes[codes >= 0].to_numpy(dtype=np.int64)
    else:
        numbers = labelled[LABEL].map(spec.class_of)
        known = labelled[numbers.notna()]
        target = numbers[numbers.notna()].to_numpy(dtype=np.float64)
    dropped_unknown = len(labelled) - len(known)
    features = known[names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    timestamps = pd.to_datetime(known[TIMESTAMP], utc=True).astype("datetime64[ns, UTC]")
    profile = DataProfile(
        rows=len(known),
        dropped_unlabelled=dropped_unlabelled,
        dropped_unknown_label=dropped_unknown,
        label_distribution=_label_distribution(target, classes),
        missing_share={
            n: float(np.isnan(features[:, j]).mean()) if len(known) else 0.0
            for j, n in enumerate(names)
        },
        first_timestamp=timestamps.min().isoformat() if len(known) else None,
        last_timestamp=timestamps.max().isoformat() if len(known) else None,
    )
    event_ids = (
        known[EVENT_ID].astype(str).tolist()
        if EVENT_ID in known.columns
        else [str(i) for i in range(len(known))]
    )
    logger.info(
        "training data usecase=%s rows=%d dropped_unlabelled=%d dropped_unknown_label=%d "
        "labels=%s missing=%s",
        spec.name,
        profile.rows,
        dropped_unlabelled,
        dropped_unknown,
        profile.label_distribution,
        {k: round(v, 3) for k, v in profile.missing_share.items() if v > 0},
    )
    return PreparedData(
        features=features,
        target=target,
        timestamps=timestamps.astype("int64").to_numpy(),
        event_ids=event_ids,
        feature_names=names,
        classes=classes,
        profile=profile,
        feature_views=[str(v) for v in frame.attrs.get("feature_views", [])],
    )


def check_enough(spec: UseCase, data: PreparedData) -> None:
    """Refuse, with a reason a person can act on, a window too small or too one-sided to learn."""
    needed = spec.models.batch.min_rows
    if data.profile.rows < needed:
        raise NotEnoughData(
            f"{spec.name}: {data.profile.rows} labelled rows in the window, "
            f"{needed} needed (models.batch.min_rows); widen the window or wait for labels"
        )
    if spec.task == "classification":
        present = int(np.unique(data.target).size)
        if present < 2:
            raise TrainingRefused(
                f"{spec.name}: only {present} class present among {data.profile.rows} rows; "
                "a classifier needs at least two"
            )
    elif float(np.std(data.target)) == 0.0:
        raise TrainingRefused(f"{spec.name}: the target is constant over the window")


def _in_window(frame: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Rows with ``start <= event_timestamp <= end``, the most recent ``rows`` of them if set."""
    stamps = pd.to_datetime(frame[TIMESTAMP], utc=True)
    keep = pd.Series(True, index=frame.index)
    if window.start is not None:
        keep &= stamps >= pd.Timestamp(window.start)
    if window.end is not None:
        keep &= stamps <= pd.Timestamp(window.end)
    order = [TIMESTAMP, EVENT_ID] if EVENT_ID in frame.columns else [TIMESTAMP]
    selected = frame[keep].assign(**{TIMESTAMP: stamps[keep]}).sort_values(order, kind="stable")
    if window.rows is not None:
        selected = selected.tail(window.rows)
    return selected.reset_index(drop=True)


def _label_distribution(
    target: npt.NDArray[Any], classes: Sequence[Any] | None
) -> dict[str, float]:
    if not len(target):
        return {}
    if classes is not None:
        counts = np.bincount(target, minlength=len(classes))
        return {str(c): float(counts[i]) / len(target) for i, c in enumerate(classes)}
    return {
        "mean": float(np.mean(target)),
        "std": float(np.std(target)),
        "min": float(np.min(target)),
        "max": float(np.max(target)),
    }
