"""One use case's monitor with real evidently tests, real demo streams and real reports."""

from __future__ import annotations

import pickle
import random
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from schemas.events import DriftAlert, FeatureRow, Prediction
from schemas.inputs import Label
from services.drift_detector.alerts import SEVERITY_RANK
from services.drift_detector.checks import check_data, profile_reference
from services.drift_detector.monitor import BOOTSTRAP, UseCaseMonitor
from services.drift_detector.windows import WindowRow
from tests.drift_detector.conftest import START, candidate, credit_spec, feature_rows


async def feed(monitor: UseCaseMonitor, rows: list[FeatureRow], reports: Path) -> None:
    for row in rows:
        await monitor.offer_features(row, reports)


def of_kind(alerts: list[DriftAlert], kind: str) -> list[DriftAlert]:
    return [alert for alert in alerts if alert.kind == kind]


async def test_stationary_stream_raises_no_alert(tmp_path: Path) -> None:
    spec = credit_spec()
    monitor = UseCaseMonitor(spec)
    await feed(monitor, feature_rows(spec, 2200), tmp_path)
    assert monitor.reference_id == BOOTSTRAP
    assert monitor.last_checks["data"].outcome == "calm"
    assert monitor.data_window.total >= 1500  # several windows were checked
    assert monitor.alerts == []


async def test_covariate_shift_is_one_alert_episode_with_scores_and_report(
    tmp_path: Path,
) -> None:
    spec = credit_spec()
    monitor = UseCaseMonitor(spec)
    rows = feature_rows(spec, 3000, drift_at=1000)
    await feed(monitor, rows, tmp_path)
    data = of_kind(monitor.alerts, "data")
    assert data, "the covariate shift was not detected"
    assert monitor.gates["data"].episodes == 1
    first = data[0]
    # Later alerts of the episode, if any, only escalate the severity.
    ranks = [SEVERITY_RANK[alert.severity] for alert in data]
    assert ranks == sorted(set(ranks))
    assert set(first.features) == set(spec.drift.features or [])
    assert first.method == "ks"
    assert all(f.threshold == 0.05 for f in first.features.values())
    drifted = {name for name, f in first.features.items() if f.drifted}
    assert "salary_z" in drifted and "age_z" in drifted
    assert first.drift_share is not None and first.drift_share >= spec.drift.drift_share
    assert first.window.rows == spec.drift.window_rows
    assert first.window.start is not None and first.window.end is not None
    assert first.window.start >= START + timedelta(seconds=spec.drift.reference_rows - 1)
    assert first.details["reference"] == BOOTSTRAP and first.champion_version is None
    # The rows no earlier check saw (those since the calm one before) begin at fresh_since.
    fresh = datetime.fromisoformat(str(first.details["fresh_since"]))
    assert first.window.start < fresh <= first.window.end
    stamps = [row.event_timestamp for row in rows]
    assert sum(fresh <= at <= first.window.end for at in stamps) == spec.drift.step_rows
    assert first.report_path is not None
    report = Path(first.report_path)
    assert not report.exists() and monitor.pending_reports  # the alert goes out first
    await monitor.write_reports()
    assert report.is_absolute() and report.is_file() and not monitor.pending_reports
    assert report.read_text()[:400].lstrip().lower().startswith("<!doctype html>")
    assert str(first.details["report_url"]).startswith("file://")


async def test_window_with_too_few_rows_is_reported_not_crashed(tmp_path: Path) -> None:
    spec = credit_spec(window_rows=80, step_rows=40, min_rows=100)
    monitor = UseCaseMonitor(spec)
    await feed(monitor, feature_rows(spec, 700), tmp_path)
    status = monitor.last_checks["data"]
    assert status.outcome == "skipped"
    assert status.reason == "too few rows: 80 < min_rows 100"
    assert monitor.alerts == []


async def test_missing_feature_is_left_out_of_the_drift_check_and_flagged_as_quality(
    tmp_path: Path,
) -> None:
    spec = credit_spec()
    monitor = UseCaseMonitor(spec)
    rows = feature_rows(spec, 1200)
    await feed(monitor, rows[:400], tmp_path)
    without_age = [
        row.model_copy(update={"features": {k: v for k, v in row.features.items() if k != "age_z"}})
        for row in rows[400:]
    ]
    await feed(monitor, without_age, tmp_path)
    assert monitor.last_checks["data"].outcome == "calm"  # the other features were checked
    quality = of_kind(monitor.alerts, "quality")
    assert len(quality) == 1
    assert quality[0].features["age_z"].drifted
    assert quality[0].features["age_z"].score == 1.0
    assert quality[0].features["age_z"].method == "missing_share"
    assert quality[0].details["flagged_features"] == "age_z"
    await monitor.write_reports()
    assert Path(str(quality[0].report_path)).is_file()


def test_every_feature_missing_is_a_skipped_window() -> None:
    spec = credit_spec()
    reference = pd.DataFrame({"x": [float(i) for i in range(200)]})
    profile = profile_reference(reference, ["x"], spec.drift)
    check = check_data(profile, pd.DataFrame({"y": [1.0] * 150}), spec.drift)
    assert check.skipped is not None and check.skipped.startswith("no feature could be checked")
    assert "x" in check.unchecked


async def test_out_of_range_values_raise_a_quality_alert(tmp_path: Path) -> None:
    spec = credit_spec()
    monitor = UseCaseMonitor(spec)
    rows = feature_rows(spec, 1000)
    await feed(monitor, rows[:400], tmp_path)
    corrupted = [
        row.model_copy(update={"features": {**row.features, "loan_z": 50.0}})
        if index % 3 == 0
        else row
        for index, row in enumerate(rows[400:])
    ]
    await feed(monitor, corrupted, tmp_path)
    quality = of_kind(monitor.alerts, "quality")
    assert len(quality) == 1
    verdict = quality[0].features["loan_z"]
    assert verdict.method == "out_of_range_share" and verdict.drifted
    assert verdict.score == pytest.approx(1 / 3, abs=0.02)
    assert quality[0].severity == "critical"


def predictions_and_labels(
    spec_name: str, n: int, accurate: bool, seed: int
) -> tuple[list[Prediction], list[Label]]:
    rng = random.Random(seed)
    predictions, labels = [], []
    for i in range(n):
        truth = rng.randint(0, 1)
        p = (0.9 if truth else 0.1) if accurate else rng.random()
        predictions.append(
            Prediction(
                usecase=spec_name,
                source_event_id=f"e{i}",
                entity_id=f"c{i}",
                model_name=spec_name,
                model_version="1",
                variant="champion",
                prediction=int(p >= 0.5),
                probabilities={"0": 1 - p, "1": p},
                latency_ms=1.0,
                occurred_at=START + timedelta(seconds=i),
            )
        )
        labels.append(
            Label(event_id=f"e{i}", label=str(truth), timestamp=START + timedelta(seconds=i + 2))
        )
    return predictions, labels


@pytest.mark.parametrize("accurate", [True, False])
async def test_performance_alert_when_joined_predictions_are_much_worse(
    tmp_path: Path, accurate: bool
) -> None:
    spec = credit_spec()
    monitor = UseCaseMonitor(spec, tolerance=0.05)
    monitor.set_champion(candidate(spec, "1", roc_auc=0.9), (spec.name, "1"))
    predictions, labels = predictions_and_labels(spec.name, 600, accurate, seed=3)
    for prediction, label in zip(predictions, labels, strict=True):
        # Labels arrive before their prediction for half the rows: the join takes both orders.
        if int(prediction.source_event_id[1:]) % 2:
            await monitor.offer_label(label, tmp_path)
            await monitor.offer_prediction(prediction, tmp_path)
        else:
            await monitor.offer_prediction(prediction, tmp_path)
            await monitor.offer_label(label, tmp_path)
    performance = of_kind(monitor.alerts, "performance")
    status = monitor.last_checks["performance"]
    if accurate:
        assert performance == []
        assert status.outcome == "calm" and status.score == 1.0
        return
    assert len(performance) == 1
    alert = performance[0]
    assert alert.method == "roc_auc" and alert.champion_version == "1"
    assert alert.details["reference_value"] == 0.9
    assert float(alert.details["degradation"]) > 0.3
    assert alert.severity == "critical"
    await monitor.write_reports()
    assert Path(str(alert.report_path)).is_file()


async def test_prediction_drift_against_the_first_window_after_the_reference(
    tmp_path: Path,
) -> None:
    spec = credit_spec()
    monitor = UseCaseMonitor(spec)
    frame = pd.DataFrame({name: [0.0, 1.0] * 200 for name in spec.drift.features or []})
    monitor.set_reference(frame, "credit:1", candidate(spec, "1"))
    rng = random.Random(5)
    for i in range(1500):
        p = rng.betavariate(2, 5) if i < 900 else rng.betavariate(5, 2)
        await monitor.offer_prediction(
            Prediction(
                usecase=spec.name,
                entity_id="c",
                model_name=spec.name,
                model_version="1",
                variant="champion",
                prediction=int(p >= 0.5),
                probabilities={"0": 1 - p, "1": p},
                latency_ms=1.0,
                occurred_at=START + timedelta(seconds=i),
            ),
            tmp_path,
        )
    alerts = of_kind(monitor.alerts, "prediction")
    assert len(alerts) == 1
    assert alerts[0].features["prediction"].drifted
    assert alerts[0].champion_version == "1"


async def test_a_checkpoint_from_before_the_shared_join_still_joins(tmp_path: Path) -> None:
    spec = credit_spec()
    monitor = UseCaseMonitor(spec, max_pending=50)
    monitor.set_champion(candidate(spec, "1", roc_auc=0.9), (spec.name, "1"))
    predictions, labels = predictions_and_labels(spec.name, 2, True, seed=5)
    # A monitor pickled before services/common/join.py kept its own two pending maps.
    state = monitor.__getstate__()
    del state["join"]
    state["pending_predictions"] = {"e0": WindowRow(0.0, {"prediction": 1, "probabilities": None})}
    state["pending_labels"] = {"e1": WindowRow(3.0, {"label": labels[1].label})}
    old = UseCaseMonitor.__new__(UseCaseMonitor)
    old.__dict__.update(state)
    restored: UseCaseMonitor = pickle.loads(pickle.dumps(old))
    assert restored.join.pending == {"predictions": 1, "labels": 1}
    await restored.offer_label(labels[0], tmp_path)
    await restored.offer_prediction(predictions[1], tmp_path)
    assert restored.join.counts["joined"] == 2
    assert restored.performance_window.total == 2
