"""evidently HTML reports, one per alert, saved under ``DRIFTLINE_HOME/drift_detector/reports``.

A report is built only when an alert is raised (about 1 s for ten columns),
never for a calm window, and in a worker thread. It uses the same tests and
thresholds the check used, so the page shows the scores the alert carries.
The file opens in a browser from the alert's ``report_path`` (or the
``file://`` URL in its ``details["report_url"]``). When the champion's
candidate event carried per-slice metrics (the use case's fairness
``slices``), each report ends with them (:class:`SliceSection`): the
champion's primary metric on each group of its test rows, beside what drifted.

>>> report_file(Path("/tmp/home/reports"), "credit", "data", "ab12").as_posix()
'/tmp/home/reports/credit/data-ab12.html'
>>> from schemas.slices import SliceScore
>>> section = SliceSection("credit v3", "roc_auc",
...     {"age_band": {"age<40": SliceScore(rows=120, value=0.81)}})
>>> "<td>age_band</td><td>age&lt;40</td><td>120</td><td>0.8100</td>" in section.html()
True
"""

from __future__ import annotations

import html
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from schemas.events import ModelCandidate
from schemas.slices import SliceScores
from schemas.usecase import UseCase
from services.drift_detector.checks import ReferenceProfile

logger = logging.getLogger(__name__)


def report_file(directory: Path, usecase: str, kind: str, alert_id: str) -> Path:
    """Where the report of one alert is saved (absolute when ``directory`` is)."""
    return directory / usecase / f"{kind}-{alert_id}.html"


@dataclass(frozen=True)
class SliceSection:
    """The champion's primary metric per slice value (from its candidate event), for reports."""

    model: str
    metric: str
    scores: SliceScores

    @classmethod
    def of(cls, spec: UseCase, candidate: ModelCandidate | None) -> SliceSection | None:
        if candidate is None or not candidate.slice_metrics:
            return None
        model = f"{candidate.model_name} v{candidate.model_version}"
        return cls(model, spec.primary_metric, candidate.slice_metrics)

    def html(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(value)}</td><td>{score.rows}</td>"
            f"<td>{'—' if score.value is None else f'{score.value:.4f}'}</td></tr>"
            for name, values in self.scores.items()
            for value, score in values.items()
        )
        return (
            '<section style="font-family:sans-serif;margin:2em">'
            f"<h2>Fairness slices: champion {html.escape(self.model)}, "
            f"{html.escape(self.metric)} on its test rows</h2>"
            '<table border="1" cellpadding="4" style="border-collapse:collapse">'
            f"<tr><th>slice</th><th>value</th><th>rows</th><th>{html.escape(self.metric)}</th>"
            f"</tr>{rows}</table></section>"
        )


def _add_section(page: str, section: SliceSection) -> None:
    """Put the slice table at the end of the saved page's body."""
    text = Path(page).read_text()
    at = text.rfind("</body>")
    at = len(text) if at < 0 else at
    Path(page).write_text(text[:at] + section.html() + text[at:])


def _save(snapshot: Any, path: Path, slices: SliceSection | None = None) -> str:
    """Write atomically (temporary file, then rename) and return the absolute path."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".html.tmp")
    os.close(descriptor)
    try:
        snapshot.save_html(temporary)
        if slices is not None:
            _add_section(temporary, slices)
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
    slices: SliceSection | None = None,
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
    return _save(snapshot, path, slices)


def save_quality_report(
    path: Path,
    profile: ReferenceProfile,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    slices: SliceSection | None = None,
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
    return _save(snapshot, path, slices)


def save_performance_report(
    path: Path, spec: UseCase, joined: pd.DataFrame, slices: SliceSection | None = None
) -> str:
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
    return _save(snapshot, path, slices)
