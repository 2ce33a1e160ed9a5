"""evidently HTML reports, one per alert, saved under ``DRIFTLINE_HOME/drift_detector/reports``.

A report is built only when an alert is raised (about 1 s for ten columns),
never for a calm window, and in a worker thread. It uses the same tests and
thresholds the check used, so the page shows the scores the alert carries.
The file opens in a browser from the alert's ``report_path`` (or the
``file://`` URL in its ``details["report_url"]``).

>>> report_file(Path("/tmp/home/reports"), "credit", "data", "ab12").as_posix()
'/tmp/home/reports/credit/data-ab12.html'
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from schemas.usecase import UseCase
from services.drift_detector.checks import ReferenceProfile

logger = logging.getLogger(__name__)


def report_file(directory: Path, usecase: str, kind: str, alert_id: str) -> Path:
    """Where the report of one alert is saved (absolute when ``directory`` is)."""
    return directory / usecase / f"{kind}-{alert_id}.html"


def _save(snapshot: Any, path: Path) -> str:
    """Write atomically (temporary file, then rename) and return the absolute path."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".html.tmp")
    os.close(descriptor)
    try:
        snapshot.save_html(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return str(path)


def _definition(profile: ReferenceProfile) -> Any:
    from evidently import DataDefinition

    return DataDefinition(
        numerical_columns=[n for n, f in profile.features.items() if f.column_type == "num"],
        categorical_columns=[n for n, f in profile.features.items() if f.column_type == "cat"],
    )


def save_drift_report(
    path: Path,
    profile: ReferenceProfile,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    drift_share: float,
) -> str:
    """evidently's data drift preset over the checked columns, with the check's tests."""
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = [name for name in profile.features if name in current.columns]
    definition = _definition(profile)
    preset = DataDriftPreset(
        columns=columns,
        drift_share=drift_share,
        per_column_method={name: profile.features[name].method for name in columns},
        per_column_threshold={name: profile.features[name].threshold for name in columns},
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition),
    )
    return _save(snapshot, path)


def save_quality_report(
    path: Path, profile: ReferenceProfile, reference: pd.DataFrame, current: pd.DataFrame
) -> str:
    """evidently's data summary (missing values, min, max per column), current vs reference."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataSummaryPreset

    columns = list(profile.features)
    current = current.reindex(columns=columns).reset_index(drop=True)
    # Every feature is a number; evidently's category summary refuses float labels.
    definition = DataDefinition(numerical_columns=columns)
    snapshot = Report([DataSummaryPreset(columns=columns)]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(
            reference.reindex(columns=columns).reset_index(drop=True), data_definition=definition
        ),
    )
    return _save(snapshot, path)


def save_performance_report(path: Path, spec: UseCase, joined: pd.DataFrame) -> str:
    """evidently's classification or regression preset over the window's labeled predictions.

    ``joined`` has columns ``target`` and ``prediction``. The champion's own test
    metric is the reference; it is in the alert, not in this page.
    """
    from evidently import (
        BinaryClassification,
        DataDefinition,
        Dataset,
        MulticlassClassification,
        Regression,
        Report,
    )
    from evidently.presets import ClassificationPreset, RegressionPreset

    frame = joined[["target", "prediction"]].reset_index(drop=True)
    if spec.task == "regression":
        definition = DataDefinition(
            numerical_columns=["target", "prediction"],
            regression=[Regression(target="target", prediction="prediction")],
        )
        preset: Any = RegressionPreset()
    else:
        frame = frame.astype(str)
        task: Any = (
            BinaryClassification(
                target="target",
                prediction_labels="prediction",
                pos_label=str(spec.positive_class),
            )
            if len(spec.label.classes or []) == 2
            else MulticlassClassification(target="target", prediction_labels="prediction")
        )
        definition = DataDefinition(
            categorical_columns=["target", "prediction"], classification=[task]
        )
        preset = ClassificationPreset()
    snapshot = Report([preset]).run(Dataset.from_pandas(frame, data_definition=definition), None)
    return _save(snapshot, path)
