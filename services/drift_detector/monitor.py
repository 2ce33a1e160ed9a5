"""One use case's monitor: its reference, its windows, and the rows that fill them.

Feature rows fill the data window; every ``step_rows`` rows the data and
quality checks run. Champion predictions fill the prediction window, checked
against the first ``window_rows`` champion predictions seen after the
reference was set. Predictions joined with labels (``source_event_id`` = label
``event_id``, in the shared :class:`~services.common.join.KeyedJoin`, bounded
by ``max_pending`` per side) fill the performance window, whose primary metric
is compared with the champion's reported test metric. How a full window is
checked, gated and alerted on is :mod:`~services.drift_detector.gating`.

Until a champion exists, the first ``reference_rows`` feature rows are a
*bootstrap* reference (alerts say ``details["reference"] == "bootstrap"``),
so drift shows before the first promotion. A promotion replaces it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from schemas.events import FeatureRow, ModelCandidate, Prediction
from schemas.inputs import Label
from schemas.usecase import UseCase
from services.common.join import KeyedJoin
from services.drift_detector.alerts import Hysteresis
from services.drift_detector.checks import PREDICTION
from services.drift_detector.gating import BOOTSTRAP, CheckStatus, GatedChecks
from services.drift_detector.reports import SliceSection
from services.drift_detector.windows import SlidingWindow, WindowRow

__all__ = ["BOOTSTRAP", "CheckStatus", "UseCaseMonitor"]

logger = logging.getLogger(__name__)


class UseCaseMonitor(GatedChecks):
    """The state of one use case; pickled whole into the checkpoint (profiles rebuilt)."""

    # The broker log ``offsets`` refer to (services/common/epoch.py); None before epochs.
    log_epoch: str | None = None

    def __init__(
        self,
        spec: UseCase,
        *,
        exit_ratio: float = 0.5,
        tolerance: float = 0.05,
        bootstrap: bool = True,
        max_pending: int = 100_000,
    ) -> None:
        drift = spec.drift
        self.spec = spec
        self.features = list(drift.features or spec.feature_names())
        self.tolerance = tolerance
        self.bootstrap_allowed = bootstrap
        self.max_pending = max_pending
        self.offsets: dict[str, int] = {}
        self.reference = None
        self.reference_id = None
        self.champion = None
        self.champion_metric = None
        self.bootstrap_rows: list[dict[str, Any]] = []
        self.data_window = SlidingWindow(drift.window_rows, drift.step_rows)
        self.prediction_reference = []
        self.prediction_window = SlidingWindow(drift.window_rows, drift.step_rows)
        self.performance_window = SlidingWindow(drift.window_rows, drift.step_rows)
        # champion predictions and labels, by event id; time is the event's own
        self.join: KeyedJoin[WindowRow, WindowRow] = KeyedJoin(
            max_pending, event_kind="predictions"
        )
        share = drift.drift_share
        quality = drift.max_missing_share
        self.gates = {
            "data": Hysteresis(share, share * exit_ratio, drift.cooldown_seconds),
            # A share equal to max_missing_share is allowed: the gate enters above it.
            "quality": Hysteresis(quality + 1e-9, quality * exit_ratio, drift.cooldown_seconds),
            "prediction": Hysteresis(0.5, 0.5, drift.cooldown_seconds),
            "performance": Hysteresis(0.5, 0.5, drift.cooldown_seconds),
        }
        self.last_checks = {}
        self.alerts = []
        self.pending_reports = []
        self._profile = None
        self._prediction_profile = None

    # ---- checkpointing: profiles hold evidently objects; rebuild them -------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_profile"] = None
        state["_prediction_profile"] = None
        state["alerts"] = []
        state["pending_reports"] = []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("pending_reports", [])  # checkpointed before reports came after alerts
        if "join" not in state:  # checkpointed before the shared join
            join: KeyedJoin[WindowRow, WindowRow] = KeyedJoin(
                state["max_pending"], event_kind="predictions"
            )
            for key, row in state.pop("pending_predictions").items():
                join.offer_event(key, row, row.at)
            for key, row in state.pop("pending_labels").items():
                join.offer_label(key, row, row.at)
            state["join"] = join
        self.__dict__.update(state)

    # ---- the reference -----------------------------------------------------------

    def set_reference(
        self, frame: pd.DataFrame, reference_id: str, candidate: ModelCandidate | None
    ) -> None:
        """Switch to a new reference: new profile, new prediction reference, calm gates."""
        self.reference = frame
        self.reference_id = reference_id
        self._profile = None
        self.profile()  # computed here, once, not per window
        self.prediction_reference = []
        self._prediction_profile = None
        self.prediction_window.clear()
        self.performance_window.clear()
        self.join.clear()
        for gate in self.gates.values():
            gate.drifting = False
            gate.last_severity = "info"
        if candidate is not None:
            self.champion = (candidate.model_name, candidate.model_version)
            self.champion_metric = candidate.metrics.get(self.spec.primary_metric)
            self.champion_slices = SliceSection.of(self.spec, candidate)
        logger.info(
            "reference set usecase=%s reference=%s rows=%d champion=%s metric=%s",
            self.name,
            reference_id,
            len(frame),
            self.champion,
            self.champion_metric,
        )

    def set_champion(self, candidate: ModelCandidate | None, champion: tuple[str, str]) -> None:
        """A new champion whose training data could not be loaded: keep the old reference."""
        self.champion = champion
        self.champion_metric = (
            candidate.metrics.get(self.spec.primary_metric) if candidate else None
        )
        self.champion_slices = SliceSection.of(self.spec, candidate)
        self.performance_window.clear()

    # ---- rows in -----------------------------------------------------------------

    async def offer_features(self, row: FeatureRow, reports_dir: Path) -> None:
        values = {name: row.features.get(name) for name in self.features}
        at = row.event_timestamp.timestamp()
        if self.reference is None:
            if not self.bootstrap_allowed:
                return
            self.bootstrap_rows.append(values)
            if len(self.bootstrap_rows) >= self.spec.drift.reference_rows:
                frame = pd.DataFrame(self.bootstrap_rows, columns=self.features).apply(
                    pd.to_numeric, errors="coerce"
                )
                self.bootstrap_rows = []
                self.set_reference(frame, BOOTSTRAP, None)
                logger.warning(
                    "bootstrap reference usecase=%s rows=%d: no champion yet; the first rows "
                    "seen are the reference until a promotion",
                    self.name,
                    len(frame),
                )
            return
        if self.data_window.add(WindowRow(at, values)):
            await self.check_data(reports_dir)

    async def offer_prediction(self, prediction: Prediction, reports_dir: Path) -> None:
        if prediction.variant != "champion":
            return
        if self.champion is not None and (prediction.model_name, prediction.model_version) != (
            self.champion
        ):
            # Answered by the previous champion (logged or labeled after the switch):
            # it says nothing about the model that serves now.
            return
        score = self._score(prediction)
        at = prediction.occurred_at.timestamp()
        if score is not None and self.reference is not None:
            if not self.prediction_reference_full():
                self.prediction_reference.append(score)
            elif self.prediction_window.add(WindowRow(at, {PREDICTION: score})):
                await self.check_prediction(reports_dir)
        if prediction.source_event_id:
            entry = WindowRow(
                at,
                {"prediction": prediction.prediction, "probabilities": prediction.probabilities},
            )
            joined = self.join.offer_event(prediction.source_event_id, entry, at)
            if joined is not None:
                await self._joined(joined.event, joined.label, reports_dir)

    async def offer_label(self, label: Label, reports_dir: Path) -> None:
        at = label.timestamp.timestamp()
        joined = self.join.offer_label(label.event_id, WindowRow(at, {"label": label.label}), at)
        if joined is not None:
            await self._joined(joined.event, joined.label, reports_dir)

    async def _joined(self, prediction: WindowRow, label: WindowRow, reports_dir: Path) -> None:
        values = {**prediction.values, "label": label.values["label"]}
        if self.performance_window.add(WindowRow(max(prediction.at, label.at), values)):
            await self.check_performance(reports_dir)

    def _score(self, prediction: Prediction) -> float | None:
        """The number whose distribution is watched: positive-class probability, class, value."""
        positive = self.spec.positive_class
        if prediction.probabilities and positive is not None:
            return self.spec.probabilities_of(prediction.probabilities).get(positive)
        if self.spec.task == "regression":
            return float(prediction.prediction)
        classes = list(self.spec.label.classes or [])
        cls = self.spec.class_of(prediction.prediction)
        return float(classes.index(cls)) if cls is not None else None
