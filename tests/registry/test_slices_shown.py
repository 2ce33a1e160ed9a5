"""Where fairness slices appear outside the gate: the batch candidate and the drift reports.

The batch trainer's per-slice metrics are computed on its test rows, the
first rows the gate holds out, and name slice values as the gate does: the
gate's own scoring of the same rows gives the same numbers. The drift
detector's evidently reports end with the champion's per-slice table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from schemas.events import ModelCandidate, Window
from schemas.usecase import UseCase
from services.batch_trainer.pipeline import train_candidate
from services.drift_detector.reports import SliceSection, save_performance_report
from services.registry.evaluation import answers, compare_slices
from tests.batch_trainer.conftest import agrawal_frame, binary_spec


def sliced(spec: UseCase) -> UseCase:
    document = spec.model_dump(mode="json", exclude_none=True)
    document["features"].append({"kind": "bin", "field": "age", "edges": [40, 60]})
    document["slices"] = [{"name": "age_band", "feature": "age_bin", "min_rows": 5}]
    return UseCase.model_validate(document)


def test_a_batch_candidate_reports_its_metric_per_slice_as_the_gate_scores_it() -> None:
    spec = sliced(binary_spec(tuning={"trials": 0}))
    frame = agrawal_frame(600)
    frame = frame.assign(age_bin=pd.cut(frame["age"], [-1, 40, 60, 200], right=False, labels=False))
    outcome = train_candidate(spec, frame, Window())
    bands = outcome.slice_metrics["age_band"]
    assert set(bands) == {"age<40", "40<=age<60", "age>=60"}
    test_rows = outcome.report.split["sizes"]["test"]
    assert sum(score.rows for score in bands.values()) == test_rows
    assert outcome.test_features is not None
    held = pd.DataFrame(outcome.test_features, columns=spec.feature_names())
    held["label"] = outcome.test_truth
    gate = compare_slices(spec, held, answers(spec, outcome.model, held), None)["age_band"]
    for value, score in bands.items():
        assert gate[value].rows == score.rows
        assert score.value is not None and gate[value].candidate == pytest.approx(score.value)


def test_drift_reports_end_with_the_champions_slice_table(tmp_path: Path) -> None:
    spec = sliced(binary_spec())
    candidate = ModelCandidate.model_validate(
        {"usecase": "credit", "model_name": "credit", "model_version": "4", "trainer": "batch",
         "flavor": "linear", "metrics": {"roc_auc": 0.8}, "data_window": {},
         "artifact_uri": "file:///m", "artifact_sha256": "0" * 64,
         "slice_metrics": {"age_band": {"age<40": {"rows": 61, "value": 0.71},
                                        "age>=60": {"rows": 40, "value": 0.93}}}}
    )  # fmt: skip
    section = SliceSection.of(spec, candidate)
    assert section is not None and SliceSection.of(spec, None) is None
    joined = pd.DataFrame({"target": [0, 1, 1, 0, 1, 0], "prediction": [0, 1, 0, 0, 1, 1]})
    saved = save_performance_report(tmp_path / "p.html", spec, joined, section)
    page = Path(saved).read_text()
    assert "Fairness slices: champion credit v4, roc_auc on its test rows" in page
    assert "<td>age_band</td><td>age&gt;=60</td><td>40</td><td>0.9300</td>" in page
    assert page.rstrip().endswith("</html>")
