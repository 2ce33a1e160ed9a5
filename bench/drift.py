"""B7 drift cost: one data-drift check of the drift detector against scipy.

The candidate is the detector's own per-window work, :func:`check_data`, on a
reference profile built once (as the service builds it when its reference
changes) with every feature of the use case, its remembered exact p-values
forgotten before each check (the same window is checked again and again); the baseline is scipy's
``ks_2samp`` plus a 10-bin PSI on the same columns.

The serving half loads the B5 rig (:mod:`bench.serving`: the
inference service with a champion, the same load generator) while
:func:`drift_loop` runs the same check back to back in another process, and
without it: that process is paused (``SIGSTOP``) for the baseline and
resumed (``SIGCONT``) for the candidate, interleaved. ``serving_rps_kept``
is the candidate's requests/s over the baseline's. The loop runs in a
session of its own, as ``driftline up`` starts the detector, at the priority the
service gives its checks there
(:func:`~services.drift_detector.priority.lower_priority` and the idle worker's
``SCHED_IDLE``), and back to back: harder on serving than the service, which
checks every ``step_rows``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data import workload
from bench.runner import (
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
from bench.stack import ROOT, StackError, wait_for, write_usecase
from schemas.usecase import UseCase

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
    from services.drift_detector import check_data, forget_p_values, profile_reference

    rows = ROWS
    context.progress.start(4 * context.repetitions + 1)
    # Reference before the drift, current window after it: a check that finds drift.
    spec, reference, current = drift_frames(Path(context.workdir) / "drift", rows)
    columns = spec.feature_names()
    drift_spec = spec.drift
    profile = profile_reference(reference, columns, drift_spec)  # imports evidently once
    context.progress.advance()
    verdicts: dict[str, int] = {}

    def run(side: Side, rep: int) -> float:
        started = time.perf_counter()
        if side == "baseline":
            verdicts["scipy"] = scipy_check(reference, current, columns)
        else:
            forget_p_values()  # each check as the first of its window's sizes and statistics
            result = check_data(profile, current, drift_spec)
            verdicts["driftline"] = len(result.drifted_features)
        return time.perf_counter() - started

    baselines, candidates = interleaved(run, context.repetitions, context.progress)
    extra: dict[str, float] = {}
    serving_details: dict[str, object] = {}
    if "inference" in discover_services():
        kept, serving_details = serving_kept(context)
        extra["serving_rps_kept"] = kept
        serving_note = (
            f"serving RPS kept while checks loop in another process: {kept:.2f} "
            f"({median(serving_details['with_drift_rps']):.0f} vs "  # type: ignore[arg-type]
            f"{median(serving_details['without_rps']):.0f} req/s, "  # type: ignore[arg-type]
            f"{serving_details['checks_during_load']} checks during the load), on the "
            f"B5 rig and load"
        )
    else:
        serving_note = "serving RPS part not measured: needs the inference service"
    return measured(
        spec_of("B7"),
        figure=median(candidates),
        unit="s/check",
        baseline=median(baselines),
        repetitions=context.repetitions,
        notes=f"{rows:,} reference and {rows:,} current rows, {len(columns)} features, "
        f"{spec.drift.method} (evidently) vs scipy ks_2samp + PSI; drifted features "
        f"{verdicts.get('driftline')} vs {verdicts.get('scipy')}; {serving_note}",
        extra=extra,
        details={
            "candidate_runs": candidates,
            "baseline_runs": baselines,
            "rows": rows,
            **serving_details,
        },
    )


ROWS = 10_000
READY_FILE = "ready"
COUNT_FILE = "checks"


def drift_frames(workdir: Path, rows: int = ROWS) -> tuple[UseCase, pd.DataFrame, pd.DataFrame]:
    """The B7 use case's spec, reference rows (before the drift) and current rows (after)."""
    spec = write_usecase(workdir / "usecases", "b7")
    load = workload(spec, 2 * rows, seed=9, drift_at=rows)
    columns = spec.feature_names()
    frame = pd.DataFrame([row.features for row in load.rows], columns=columns).astype(float)
    reference = frame.iloc[:rows].reset_index(drop=True)
    current = frame.iloc[rows:].reset_index(drop=True)
    return spec, reference, current


def drift_loop(workdir: Path) -> None:
    """Run the B7 data check back to back until killed; count checks in ``workdir/checks``.

    Writes ``workdir/ready`` once the reference is profiled (evidently imported).
    Started in a session of its own, as ``driftline up`` starts the detector, it runs
    at the detector's own priority (``DRIFTLINE_NICE`` on the process and its
    session's autogroup, as the service sets them at start, and ``SCHED_IDLE`` with
    ``DRIFTLINE_IDLE_CHECKS``, as its checking thread has it), so the serving half
    measures what the service costs.
    """
    from services.drift_detector import check_data, forget_p_values, profile_reference
    from services.drift_detector.priority import idle_checks_apply, idle_thread, lower_priority
    from services.drift_detector.settings import DriftDetectorSettings

    settings = DriftDetectorSettings()
    lower_priority(settings.nice)

    workdir.mkdir(parents=True, exist_ok=True)
    spec, reference, current = drift_frames(workdir)
    drift_spec = spec.drift
    columns = spec.feature_names()
    profile = profile_reference(reference, columns, drift_spec)
    check_data(profile, current, drift_spec)
    # The loop's one thread is now the service's checking thread. Not before: the
    # service imports evidently in its warm-up thread, at its start's priority, and at
    # SCHED_IDLE on a loaded machine the setup did not end in B7's 180 s.
    if idle_checks_apply(settings.idle_checks):
        idle_thread()
    (workdir / READY_FILE).write_text(str(os.getpid()))
    count = 0
    while True:
        forget_p_values()  # the same window again: its p-values computed, not remembered
        check_data(profile, current, drift_spec)
        count += 1
        (workdir / COUNT_FILE).write_text(str(count))


def _checks(workdir: Path) -> int:
    try:
        return int((workdir / COUNT_FILE).read_text() or 0)
    except (OSError, ValueError):
        return 0


def serving_kept(context: BenchContext) -> tuple[float, dict[str, object]]:
    """Serving requests/s with a drift check looping beside it over requests/s without."""
    from bench.serving import CONCURRENCY, load_seconds, serving_rig

    rig = serving_rig(context)
    workdir = Path(context.workdir) / "drift-loop"
    log = (rig.stack.logs / "drift-loop.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.drift", str(workdir)],
        cwd=ROOT,
        env=rig.stack.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # as driftline up starts the drift detector
    )
    log.close()
    try:
        if (
            not wait_for(
                lambda: (workdir / READY_FILE).exists() or process.poll() is not None, 180, 0.2
            )
            or process.poll() is not None
        ):
            raise StackError(f"the drift loop did not start: {rig.stack.tail('drift-loop')}")
        process.send_signal(signal.SIGSTOP)
        seconds = load_seconds(context)
        checks = 0

        def run(side: Side, rep: int) -> float:
            nonlocal checks
            if side == "candidate":
                before = _checks(workdir)
                process.send_signal(signal.SIGCONT)
            try:
                stats = rig.load("candidate", concurrency=CONCURRENCY, seconds=seconds)
            finally:
                if side == "candidate":
                    process.send_signal(signal.SIGSTOP)
                    checks += _checks(workdir) - before
            return stats.rps

        without, with_drift = interleaved(run, context.repetitions, context.progress)
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    kept = median(with_drift) / median(without)
    return kept, {
        "with_drift_rps": with_drift,
        "without_rps": without,
        "checks_during_load": checks,
    }


if __name__ == "__main__":  # the drift check looping beside the B5 rig (B7)
    drift_loop(Path(sys.argv[1]))
