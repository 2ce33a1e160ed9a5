"""A monitor's windows checked, gated and alerted on.

Every full window is checked in a worker thread (the evidently checks of
:mod:`~services.drift_detector.checks`; the service's idle one,
:func:`~services.drift_detector.priority.in_worker`), so the event loop stays free. Its
score passes the kind's :class:`~services.drift_detector.alerts.Hysteresis`
gate; a gate that opens raises a :class:`~schemas.events.DriftAlert` naming its
evidently report, which the service writes right after publishing the alert
(:meth:`GatedChecks.write_reports`) and before its checkpoint. A window that
cannot be checked (too few rows, every feature missing) is recorded in
:attr:`GatedChecks.last_checks` with the reason, logged and counted
(``driftline_drift_checks_total{outcome="skipped"}``), never raised.

:class:`GatedChecks` is the checking half of
:class:`~services.drift_detector.monitor.UseCaseMonitor`, which holds the state
declared here and fills the windows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd
from prometheus_client import Counter, Gauge

from schemas.events import DriftAlert, FeatureDrift, Window
from schemas.usecase import LOWER_IS_BETTER, UseCase
from services.drift_detector import reports
from services.drift_detector.alerts import Hysteresis, alert_id, severity_for, with_report
from services.drift_detector.checks import (
    PREDICTION,
    DriftCheck,
    PerformanceCheck,
    QualityCheck,
    ReferenceProfile,
    check_data,
    check_performance,
    check_prediction,
    check_quality,
    labeled_pairs,
    profile_reference,
)
from services.drift_detector.priority import in_worker
from services.drift_detector.windows import SlidingWindow, WindowRow, bounds_of

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

CHECKS = Counter("driftline_drift_checks_total", "Drift checks run", ["usecase", "kind", "outcome"])
ALERTS = Counter("driftline_drift_detector_alerts_total", "Alerts raised", ["usecase", "kind"])
SCORE = Gauge(
    "driftline_drift_score", "Last check's score (drift share, etc.)", ["usecase", "kind"]
)

KINDS = ("data", "quality", "prediction", "performance")
BOOTSTRAP = "bootstrap"
# An alert's detail (ISO 8601): where its window's rows that no earlier check saw begin.
FRESH_SINCE = "fresh_since"


@dataclass(frozen=True)
class CheckStatus:
    """The outcome of a monitor's last check of one kind."""

    outcome: str  # "calm", "drifting" or "skipped"
    reason: str | None
    window: Window
    score: float | None = None


class GatedChecks:
    """The checks of one use case's windows, their gates and the alerts they raise."""

    spec: UseCase
    features: list[str]
    tolerance: float
    reference: pd.DataFrame | None
    reference_id: str | None
    champion: tuple[str, str] | None
    champion_metric: float | None
    champion_slices: reports.SliceSection | None = None  # shown in every report
    prediction_reference: list[float]
    data_window: SlidingWindow
    prediction_window: SlidingWindow
    performance_window: SlidingWindow
    gates: dict[str, Hysteresis]
    last_checks: dict[str, CheckStatus]
    alerts: list[DriftAlert]
    pending_reports: list[Callable[[], str]]
    _profile: ReferenceProfile | None
    _prediction_profile: ReferenceProfile | None

    @property
    def name(self) -> str:
        return self.spec.name

    def profile(self) -> ReferenceProfile | None:
        """The reference profile, built once per reference."""
        if self._profile is None and self.reference is not None:
            self._profile = profile_reference(self.reference, self.features, self.spec.drift)
        return self._profile

    def prediction_profile(self) -> ReferenceProfile | None:
        if self._prediction_profile is None and self.prediction_reference_full():
            frame = pd.DataFrame({PREDICTION: self.prediction_reference})
            self._prediction_profile = profile_reference(frame, [PREDICTION], self.spec.drift)
        return self._prediction_profile

    def prediction_reference_full(self) -> bool:
        return len(self.prediction_reference) >= self.spec.drift.window_rows

    def _record(
        self, kind: str, outcome: str, reason: str | None, window: Window, score: float | None
    ) -> None:
        self.last_checks[kind] = CheckStatus(outcome, reason, window, score)
        CHECKS.labels(self.name, kind, outcome).inc()
        if score is not None:
            SCORE.labels(self.name, kind).set(score)
        if outcome == "skipped":
            logger.info(
                "window not checked usecase=%s kind=%s rows=%s reason=%s",
                self.name,
                kind,
                window.rows,
                reason,
            )

    async def check_data(self, reports_dir: Path) -> None:
        profile = self.profile()
        rows = self.data_window.rows()
        if profile is None:
            return
        window = bounds_of(rows)
        drift = self.spec.drift
        current, data, quality = await in_worker(
            _data_and_quality, profile, rows, self.features, drift
        )
        await self._after_data(data, window, profile, current, reports_dir)
        await self._after_quality(quality, window, profile, current, reports_dir)

    async def _after_data(
        self,
        data: DriftCheck,
        window: Window,
        profile: ReferenceProfile,
        current: pd.DataFrame,
        reports_dir: Path,
    ) -> None:
        if data.skipped is not None or data.drift_share is None:
            self._record("data", "skipped", data.skipped, window, None)
            return
        share = data.drift_share
        threshold = self.spec.drift.drift_share
        severity = severity_for(share, threshold)
        gate = self.gates["data"]
        raise_alert = gate.update(share, severity, _end(window))
        self._record("data", "drifting" if gate.drifting else "calm", None, window, share)
        if data.unchecked:
            logger.warning(
                "features not checked usecase=%s %s",
                self.name,
                ", ".join(f"{k}: {v}" for k, v in sorted(data.unchecked.items())),
            )
        if not raise_alert:
            return
        alert = self._alert(
            "data",
            severity,
            _method(data.features),
            data.features,
            share,
            window,
            {
                "drift_share_threshold": threshold,
                "drifted_features": ",".join(data.drifted_features),
                "unchecked_features": ",".join(sorted(data.unchecked)),
            },
        )
        assert self.reference is not None
        path = reports.report_file(reports_dir, self.name, "data", alert.alert_id)
        self._raise(alert, path, partial(
            reports.save_drift_report, path, profile, self.reference, current, threshold,
            self.champion_slices,
        ))  # fmt: skip

    async def _after_quality(
        self,
        quality: QualityCheck,
        window: Window,
        profile: ReferenceProfile,
        current: pd.DataFrame,
        reports_dir: Path,
    ) -> None:
        if quality.skipped is not None:
            self._record("quality", "skipped", quality.skipped, window, None)
            return
        threshold = self.spec.drift.max_missing_share
        severity = severity_for(quality.score, threshold)
        gate = self.gates["quality"]
        raise_alert = gate.update(quality.score, severity, _end(window))
        self._record(
            "quality", "drifting" if gate.drifting else "calm", None, window, quality.score
        )
        if not raise_alert:
            return
        flagged = sorted(name for name, v in quality.features.items() if v.drifted)
        details: dict[str, float | str] = {"flagged_features": ",".join(flagged)}
        for name in flagged:
            details[f"missing_share.{name}"] = quality.missing_share[name]
            details[f"out_of_range_share.{name}"] = quality.out_of_range_share[name]
        alert = self._alert(
            "quality", severity, "missing_and_range", quality.features, None, window, details
        )
        assert self.reference is not None
        path = reports.report_file(reports_dir, self.name, "quality", alert.alert_id)
        self._raise(alert, path, partial(
            reports.save_quality_report, path, profile, self.reference, current,
            self.champion_slices,
        ))  # fmt: skip

    async def check_prediction(self, reports_dir: Path) -> None:
        rows = self.prediction_window.rows()
        window = bounds_of(rows)
        profile = self.prediction_profile()
        current = pd.Series([row.values[PREDICTION] for row in rows], dtype=float)
        check = await in_worker(check_prediction, profile, current, self.spec.drift)
        if check.skipped is not None or check.drift_share is None:
            self._record("prediction", "skipped", check.skipped, window, None)
            return
        verdict = check.features[PREDICTION]
        gate = self.gates["prediction"]
        raise_alert = gate.update(check.drift_share, "warning", _end(window))
        self._record(
            "prediction", "drifting" if gate.drifting else "calm", None, window, verdict.score
        )
        if not raise_alert or profile is None:
            return
        alert = self._alert(
            "prediction", "warning", verdict.method, check.features, check.drift_share, window, {}
        )
        path = reports.report_file(reports_dir, self.name, "prediction", alert.alert_id)
        reference = pd.DataFrame({PREDICTION: self.prediction_reference})
        self._raise(alert, path, partial(
            reports.save_drift_report, path, profile, reference,
            pd.DataFrame({PREDICTION: current}), 0.5, self.champion_slices,
        ))  # fmt: skip

    async def check_performance(self, reports_dir: Path) -> None:
        rows = self.performance_window.rows()
        window = bounds_of(rows)
        spec = self.spec
        truths, predictions, probabilities = labeled_pairs(
            spec,
            [row.values["label"] for row in rows],
            [row.values["prediction"] for row in rows],
            [row.values.get("probabilities") for row in rows],
        )
        check: PerformanceCheck = await in_worker(
            check_performance,
            spec,
            truths,
            predictions,
            probabilities,
            self.champion_metric,
            self.tolerance,
        )
        if check.skipped is not None or check.degradation is None:
            self._record("performance", "skipped", check.skipped, window, check.value)
            return
        severity = severity_for(check.degradation, self.tolerance) if self.tolerance else "warning"
        gate = self.gates["performance"]
        raise_alert = gate.update(1.0 if check.drifted else 0.0, severity, _end(window))
        self._record(
            "performance", "drifting" if gate.drifting else "calm", None, window, check.value
        )
        if not raise_alert:
            return
        assert check.value is not None and check.reference is not None
        verdict = FeatureDrift(
            score=check.value,
            method=check.metric,
            threshold=_limit(check.reference, self.tolerance, check.metric),
            drifted=True,
        )
        alert = self._alert(
            "performance",
            severity,
            check.metric,
            {check.metric: verdict},
            None,
            window,
            {
                "metric": check.metric,
                "window_value": check.value,
                "reference_value": check.reference,
                "degradation": check.degradation,
                "tolerance": self.tolerance,
            },
        )
        path = reports.report_file(reports_dir, self.name, "performance", alert.alert_id)
        joined = pd.DataFrame({"target": truths, "prediction": predictions})
        self._raise(alert, path, partial(
            reports.save_performance_report, path, spec, joined, self.champion_slices
        ))  # fmt: skip

    def _raise(self, alert: DriftAlert, path: Path, render: Callable[[], str]) -> None:
        """Queue the alert, naming its report's path, and the report's rendering.

        The alert is published first and its report written right after, before
        the checkpoint (:meth:`write_reports`): evidently's HTML report takes many
        times the check's own time, and the loop waits for the alert, not the page.
        A crash in between replays the window from the last checkpoint: the same
        alert (same id) and its report again.
        """
        self.alerts.append(with_report(alert, str(path.resolve())))
        self.pending_reports.append(render)

    async def write_reports(self) -> None:
        """Render the reports of the alerts raised since the last call (in a worker thread)."""
        while self.pending_reports:
            render = self.pending_reports.pop(0)
            await in_worker(render)

    def _alert(
        self,
        kind: str,
        severity: str,
        method: str,
        features: dict[str, FeatureDrift],
        share: float | None,
        window: Window,
        details: dict[str, float | str],
    ) -> DriftAlert:
        reference_id = self.reference_id or BOOTSTRAP
        windows = {
            "data": self.data_window,
            "quality": self.data_window,
            "prediction": self.prediction_window,
            "performance": self.performance_window,
        }
        position = windows[kind].total
        identifier = alert_id(self.name, kind, reference_id, position)
        fresh = windows[kind].fresh_since()
        ALERTS.labels(self.name, kind).inc()
        return DriftAlert(
            event_id=identifier,
            alert_id=identifier,
            usecase=self.name,
            kind=kind,
            severity=severity,
            method=method,
            features=features,
            drift_share=share,
            window=window,
            champion_version=self.champion[1] if self.champion else None,
            details={
                "reference": reference_id,
                "reference_rows": float(len(self.reference) if self.reference is not None else 0),
                "model_name": self.champion[0] if self.champion else "",
                **({FRESH_SINCE: fresh.isoformat()} if fresh is not None else {}),
                **details,
            },
        )


def _data_and_quality(
    profile: ReferenceProfile, rows: list[WindowRow], features: list[str], drift: Any
) -> tuple[pd.DataFrame, DriftCheck, QualityCheck]:
    """The window as a numeric frame (absent values NaN) and both checks on it."""
    frame = pd.DataFrame([row.values for row in rows], columns=features)
    current = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    return current, check_data(profile, current, drift), check_quality(profile, current, drift)


def _end(window: Window) -> float:
    return window.end.timestamp() if window.end is not None else 0.0


def _method(features: dict[str, FeatureDrift]) -> str:
    """The method name of an alert: the one every column used, or ``mixed``."""
    methods = sorted({v.method for v in features.values()})
    return methods[0] if len(methods) == 1 else "mixed:" + ",".join(methods)


def _limit(reference: float, tolerance: float, metric: str) -> float:
    value = reference + tolerance if metric in LOWER_IS_BETTER else reference - tolerance
    return value if math.isfinite(value) else reference
