"""B11 for real: the rig's river champion with and without ``?explain=true``, the batch families.

No test here asserts a time: benchmarks are not tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import load_benchmarks
from bench.runner import BenchContext, run_benchmarks


def test_b11_is_registered_by_its_own_module() -> None:
    registry = load_benchmarks()
    assert registry["B11"].function.__module__ == "bench.explain"
    assert registry["B11"].target.met({"ratio": 1.5}) is True
    assert registry["B11"].target.met({"ratio": 2.5}) is False


@pytest.mark.slow
@pytest.mark.integration
def test_a_quick_real_b11_run_measures_both_sides_and_the_batch_families(tmp_path: Path) -> None:
    load_benchmarks()
    context = BenchContext(quick=True, repetitions=1, workdir=tmp_path)
    context.cache["serving-seconds"] = 0.5
    (result,) = list(run_benchmarks(["B11"], context))
    assert result.status == "measured", result.notes
    assert result.figure is not None and result.figure > 0
    assert result.baseline is not None and result.baseline > 0
    assert result.ratio == pytest.approx(result.figure / result.baseline)
    assert "non-200 answers 0 vs 0" in result.notes
    batch = result.details["batch_in_process"]
    assert set(batch) == {"torch", "linear", "tree"}
    for costs in batch.values():
        assert costs["explain_ms"] > 0 and costs["predict_ms"] > 0
