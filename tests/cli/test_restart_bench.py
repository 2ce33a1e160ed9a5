"""B10 for real: ``driftline up`` (every service) on a home an earlier run left, twice.

Each run starts on a new, empty embedded broker log and is stopped with
Ctrl-C (SIGINT to the process group); each must answer ``/v1/predict`` with
the champion MLflow holds. How fast is B10's figure, not this test's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import load_benchmarks
from bench.runner import BenchContext, run_benchmarks

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_up_on_an_existing_home_serves_the_earlier_champion_after_each_restart(
    tmp_path: Path,
) -> None:
    load_benchmarks()
    context = BenchContext(quick=True, repetitions=2, workdir=tmp_path)
    (result,) = list(run_benchmarks(["B10"], context))
    assert result.status == "measured", result.notes
    runs = result.details["runs"]
    assert len(runs) == 2
    assert all(0 < run["ready"] <= run["served"] for run in runs), runs
    assert result.details["champion_version"] == "1"
    log = (tmp_path / "restart" / "logs" / "b10-up.log").read_text()
    assert log.count("restored from MLflow") >= 2  # the promoter put it back on each new log
    assert log.count("log epoch") == 2
