"""The evaluation gate's data and scores: candidate and champion on the same held-out rows.

The rows are the most recent labeled rows (``eval_rows`` of them) whose
events come after the candidate's training window, from the injected data
source (:data:`GateData`, the Feast offline store's point-in-time join by
default). Both models are also scored on each fairness slice of those rows
(the use case's ``slices``, grouped by :mod:`services.common.slices`). With
fewer than ``min_rows`` such rows (the first model, an online snapshot of the
latest events) the gate falls back to the metrics the trainers reported, and
the reason says so (and compares no slices). Models are fetched from MLflow by
artifact URI and checked against their sha256 before they are unpickled.
Blocking: the service calls :meth:`Evaluator.evaluate` in a worker thread.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from schemas.events import ModelCandidate, Window
from schemas.slices import SliceComparison, SliceComparisons
from schemas.usecase import UseCase
from services.common.models import Model, load_model
from services.common.promotions.history import ModelRef
from services.common.slices import slice_groups
from services.registry.errors import ModelUnavailable
from services.registry.scoring import score

logger = logging.getLogger(__name__)

GateData = Callable[[UseCase, Window | None], pd.DataFrame]
LABEL = "label"
TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class GateScores:
    """Both models' primary metric, where it came from, and on how many rows."""

    candidate: float | None
    champion: float | None
    rows: int
    basis: str  # goes into the promotion's reason
    slices: SliceComparisons = field(default_factory=dict)  # on the same rows


def holdout_after(candidate: ModelCandidate) -> datetime | None:
    """The time after which no row was trained or selected on: the trainer's own
    test part when its lineage says where it starts, else the end of its window.

    >>> from schemas.events import Window
    >>> c = ModelCandidate(usecase="u", model_name="u", model_version="1", trainer="batch",
    ...     flavor="torch", metrics={}, data_window=Window(end="2026-01-02T00:00:00Z"),
    ...     artifact_uri="file:///m", artifact_sha256="0" * 64,
    ...     lineage={"holdout_after": "2026-01-01T12:00:00+00:00"})
    >>> holdout_after(c).isoformat()
    '2026-01-01T12:00:00+00:00'
    """
    marker = candidate.lineage.get("holdout_after")
    if marker:
        return datetime.fromisoformat(marker)
    return candidate.data_window.end


def held_out(frame: pd.DataFrame, after: datetime | None, limit: int) -> pd.DataFrame:
    """The latest ``limit`` labeled rows whose event time is strictly after ``after``.

    >>> from datetime import UTC
    >>> frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "label": [0, 1, None, 1],
    ...     "event_timestamp": pd.date_range("2026-01-01", periods=4, freq="h", tz="UTC")})
    >>> held_out(frame, datetime(2026, 1, 1, 0, tzinfo=UTC), limit=5)["x"].tolist()
    [2.0, 4.0]
    >>> held_out(frame, None, limit=1)["x"].tolist()
    [4.0]
    """
    if frame.empty or LABEL not in frame.columns or TIMESTAMP not in frame.columns:
        return frame.iloc[0:0]
    stamps = pd.to_datetime(frame[TIMESTAMP], utc=True)
    keep = frame[LABEL].notna()
    if after is not None:
        keep &= stamps > pd.Timestamp(after)
    selected = frame[keep].assign(**{TIMESTAMP: stamps[keep]})
    return selected.sort_values(TIMESTAMP, kind="stable").tail(limit).reset_index(drop=True)


@dataclass(frozen=True)
class Answers:
    """One model's predictions (and class probabilities) on a frame's rows, with the truth."""

    truth: list[Any]
    predicted: list[Any]
    proba: list[Any] | None

    def metrics(self, spec: UseCase, rows: Sequence[int] | None = None) -> dict[str, float]:
        """The spec's metrics on all rows, or on the row positions ``rows``."""
        if rows is None:
            return score(spec, self.truth, self.predicted, self.proba)
        proba = None if self.proba is None else [self.proba[i] for i in rows]
        return score(spec, [self.truth[i] for i in rows], [self.predicted[i] for i in rows], proba)


def feature_rows(spec: UseCase, frame: pd.DataFrame) -> list[dict[str, float]]:
    """The frame's feature columns as the rows models take."""
    names = spec.feature_names()
    return [
        {name: float(value) for name, value in zip(names, values, strict=True)}
        for values in frame[names].astype(float).itertuples(index=False, name=None)
    ]


def answers(spec: UseCase, model: Model, frame: pd.DataFrame) -> Answers:
    """``model``'s answers on the frame's feature columns, beside its labels."""
    rows = feature_rows(spec, frame)
    proba = list(model.predict_proba(rows)) if spec.task == "classification" else None
    return Answers(frame[LABEL].tolist(), model.predict(rows), proba)


def score_model(spec: UseCase, model: Model, frame: pd.DataFrame) -> dict[str, float]:
    """The spec's metrics of ``model`` on the frame's feature columns and labels."""
    return answers(spec, model, frame).metrics(spec)


def compare_slices(
    spec: UseCase, frame: pd.DataFrame, candidate: Answers, champion: Answers | None
) -> SliceComparisons:
    """Both models' primary metric on each slice value's rows of ``frame``."""
    metric = spec.primary_metric
    found: SliceComparisons = {}
    for piece in spec.slices:
        found[piece.name] = {
            label: SliceComparison(
                rows=len(rows),
                candidate=candidate.metrics(spec, rows).get(metric),
                champion=None if champion is None else champion.metrics(spec, rows).get(metric),
            )
            for label, rows in slice_groups(spec, piece, frame).items()
        }
    return found


class ModelStore:
    """Model versions fetched from MLflow into a scratch directory, loaded once each."""

    def __init__(self, home: Path, mlflow_uri: str | None, workdir: Path) -> None:
        self.home = home
        self.mlflow_uri = mlflow_uri
        self.workdir = workdir
        self._loaded: dict[tuple[str, str], Model] = {}

    def load(self, ref: ModelRef) -> Model:
        key = (ref.name, ref.version)
        if key in self._loaded:
            return self._loaded[key]
        if not ref.artifact_uri:
            raise ModelUnavailable(f"{ref.label}: no artifact URI in its events")
        from services.common import tracking

        client = tracking.client(self.home, self.mlflow_uri)
        self.workdir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=self.workdir))
        try:
            directory = tracking.download_model_dir(client, ref.artifact_uri, scratch)
            model = load_model(directory, ref.artifact_sha256)
        except Exception as exc:
            raise ModelUnavailable(f"{ref.label}: cannot load {ref.artifact_uri}: {exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if len(self._loaded) >= 8:  # champions change rarely; keep memory bounded
            self._loaded.pop(next(iter(self._loaded)))
        self._loaded[key] = model
        return model


def candidate_ref(candidate: ModelCandidate) -> ModelRef:
    return ModelRef(
        candidate.model_name,
        candidate.model_version,
        candidate.artifact_uri,
        candidate.artifact_sha256,
    )


# The adapters of the flavors a batch candidate comes in (torch: seconds of imports).
ADAPTERS = ("services.common.models.torch_model", "services.common.models.tree_model")


class Evaluator:
    """Scores a candidate and the champion for the gate.

    The first gate (the first model, an online snapshot, as a rule) starts importing the
    batch flavors' adapters in the background: the first drift-triggered candidate's
    gate, on the closed loop's clock, would otherwise pay torch's import (about 2 s of
    CPU). A registry that never gates pays nothing at start (a restart's B10).
    """

    def __init__(self, data_source: GateData, models: ModelStore, min_rows: int) -> None:
        self.data_source = data_source
        self.models = models
        self.min_rows = min_rows
        self._warmup: threading.Thread | None = None
        self._adapters: threading.Thread | None = None
        self.adapters_imported: list[str] = []

    def import_adapters(self) -> threading.Thread:
        """Import :data:`ADAPTERS` in a background thread, once; the thread is returned."""
        if self._adapters is None:

            def run() -> None:
                for module in ADAPTERS:
                    try:
                        importlib.import_module(module)
                        self.adapters_imported.append(module)
                    except ImportError as exc:  # the gate of such a model says so itself
                        logger.info("adapter %s not imported: %s", module, exc)

            self._adapters = threading.Thread(target=run, name="adapters", daemon=True)
            self._adapters.start()
        return self._adapters

    def warm_up(self, specs: Sequence[UseCase]) -> threading.Thread:
        """Open the data source (an empty window, an hour from now) in the background.

        The Feast store's first open (registry, imports) would otherwise be paid by the
        first candidate's gate, on the closed loop's clock; :meth:`evaluate` waits for it.
        """

        def run() -> None:
            later = datetime.now(UTC) + timedelta(hours=1)
            for spec in specs:
                try:
                    self.data_source(spec, Window(start=later, end=later))
                except Exception:  # the gate meets it again and says so in its verdict
                    logger.exception("gate data warm-up failed usecase=%s", spec.name)

        self._warmup = threading.Thread(target=run, name="warmup", daemon=True)
        self._warmup.start()
        return self._warmup

    def evaluate(
        self, spec: UseCase, candidate: ModelCandidate, champion: ModelRef | None
    ) -> GateScores:
        if self._warmup is not None:
            self._warmup.join()
        self.import_adapters()
        metric = spec.primary_metric
        after = holdout_after(candidate)
        frame = self.data_source(spec, Window(start=after) if after else None)
        rows = held_out(frame, after, spec.promotion.eval_rows)
        if len(rows) >= self.min_rows:
            mine = answers(spec, self.models.load(candidate_ref(candidate)), rows)
            theirs = None if champion is None else answers(spec, self.models.load(champion), rows)
            candidate_score = mine.metrics(spec).get(metric)
            champion_score = None if theirs is None else theirs.metrics(spec).get(metric)
            scorable = candidate_score is not None and (
                champion is None or champion_score is not None
            )
            if scorable:
                where = "held out from the candidate's training" if after else "most recent"
                return GateScores(
                    candidate_score, champion_score, len(rows),
                    f"on {len(rows)} held-out labeled rows ({where})",
                    compare_slices(spec, rows, mine, theirs),
                )  # fmt: skip
            logger.info("usecase=%s %s undefined on %d rows", spec.name, metric, len(rows))
        reported = candidate.metrics.get(metric)
        champion_reported = champion.score if champion is not None else None
        basis = (
            f"as reported by the {candidate.trainer} trainer (fallback: {len(rows)} held-out "
            f"labeled rows, {self.min_rows} needed)"
        )
        if champion is not None:
            basis += "; champion: its score when promoted"
        return GateScores(reported, champion_reported, len(rows), basis)
