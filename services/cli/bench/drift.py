"""B7 drift cost: one data-drift check of the drift detector against scipy.

The candidate is the detector's own per-window work, :func:`check_data`, on a
reference profile built once (as the service builds it when its reference
changes) with every feature of the use case; the baseline is scipy's
``ks_2samp`` plus a 10-bin PSI on the same columns. The serving half of B7
(inference requests/s kept while a check runs) needs the inference service.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from services.cli.bench.data import workload
from services.cli.bench.runner import (
    BenchContext,
    Criterion,
    Result,
    Side,
    Target,
    benchmark,
    interleaved,
    measured,
    median,
    spec_of,
)
from services.cli.bench.stack import write_usecase

PSI_BINS = 10


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index over ``bins`` reference quantile bins.

    >>> values = np.arange(1000, dtype=float)
    >>> psi(values, values)
    0.0
    >>> psi(values, values + 500) > 1.0
    True
    """
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(reference, edges)[0] / len(reference)
    actual = np.histogram(current, edges)[0] / len(current)
    expected = np.clip(expected, 1e-6, None)
    actual = np.clip(actual, 1e-6, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def scipy_check(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> int:
    """The baseline: ks_2samp and PSI per column; returns the number of drifted columns."""
    from scipy.stats import ks_2samp

    drifted = 0
    for name in columns:
        ref = reference[name].dropna().to_numpy()
        cur = current[name].dropna().to_numpy()
        p_value = ks_2samp(ref, cur).pvalue
        drifted += int(p_value < 0.05 or psi(ref, cur) > 0.2)
    return drifted


@benchmark(
    "B7",
    "drift cost",
    Target(
        "ratio <= 2; serving RPS kept >= 0.9",
        [Criterion("ratio", "<=", 2.0), Criterion("serving_rps_kept", ">=", 0.9)],
    ),
)
def drift_cost(context: BenchContext) -> Result:
    from services.cli.up import discover_services
    from services.drift_detector.checks import check_data, profile_reference

    rows = 10_000
    context.progress.start(2 * context.repetitions + 1)
    spec = write_usecase(Path(context.workdir) / "drift", "b7")
    # Reference before the drift, current window after it: a check that finds drift.
    load = workload(spec, 2 * rows, seed=9, drift_at=rows)
    columns = spec.feature_names()
    frame = pd.DataFrame([row.features for row in load.rows], columns=columns).astype(float)
    reference, current = frame.iloc[:rows].reset_index(drop=True), frame.iloc[rows:]
    current = current.reset_index(drop=True)
    drift_spec = spec.drift
    profile = profile_reference(reference, columns, drift_spec)  # imports evidently once
    context.progress.advance()
    verdicts: dict[str, int] = {}

    def run(side: Side, rep: int) -> float:
        started = time.perf_counter()
        if side == "baseline":
            verdicts["scipy"] = scipy_check(reference, current, columns)
        else:
            result = check_data(profile, current, drift_spec)
            verdicts["driftline"] = len(result.drifted_features)
        return time.perf_counter() - started

    baselines, candidates = interleaved(run, context.repetitions, context.progress)
    serving = "inference" in discover_services()
    serving_note = (
        "serving RPS part not measured: the B7 serving load is not written yet"
        if serving
        else "serving RPS part not measured: needs the inference service"
    )
    return measured(
        spec_of("B7"),
        figure=median(candidates),
        unit="s/check",
        baseline=median(baselines),
        repetitions=context.repetitions,
        notes=f"{rows:,} reference and {rows:,} current rows, {len(columns)} features, "
        f"{spec.drift.method} (evidently) vs scipy ks_2samp + PSI; drifted features "
        f"{verdicts.get('driftline')} vs {verdicts.get('scipy')}; {serving_note}",
        details={"candidate_runs": candidates, "baseline_runs": baselines, "rows": rows},
    )
