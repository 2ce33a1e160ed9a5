"""B11 explanation cost: p99 of ``POST /v1/predict/{uc}?explain=true`` against the same request.

The candidate and the baseline are the same request to the same real
inference service (B5's rig, :func:`bench.serving.serving_rig`: a river
Hoeffding-tree champion of the credit use case, request fields featurized by
the shared preparer), with and without ``?explain=true``, interleaved, at a
low concurrency so the p99 is a latency rather than a queue. The figure is
the explained request's p99, the ratio against the plain one's decides the
target.

The batch families (the linear model, the MLP and the gradient-boosted
trees) are trained here by the batch trainer's own pipeline on credit rows
(the outcome B5's MLP champions came from, :mod:`bench.runtimes`) and timed in process: one item's
prediction against its prediction and explanation (``linear_exact``,
``integrated_gradients``, ``tree_shap``), median per item; the report's
details carry them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bench.data import workload
from bench.load import LoadStats, drive
from bench.pending import not_available
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
from bench.serving import load_note, load_seconds, serving_rig
from schemas.usecase import UseCase

if TYPE_CHECKING:
    from services.batch_trainer.pipeline import TrainingOutcome

CONCURRENCY = 4
TIMED_ITEMS = 50


def batch_costs(
    spec: UseCase, outcome: TrainingOutcome, items: int = TIMED_ITEMS
) -> dict[str, dict[str, float]]:
    """Per family of ``outcome``: median ms of one item's prediction, and of its
    prediction and explanation."""
    from services.inference import explain_rows

    sample = [dict(row.features) for row in workload(spec, items, seed=5).rows]
    costs: dict[str, dict[str, float]] = {}
    for model in (outcome.model, *outcome.losers.values()):

        def plain(row: dict[str, Any], model: Any = model) -> None:
            model.predict([row])
            model.predict_proba([row])

        def explained(row: dict[str, Any], model: Any = model) -> None:
            plain(row)
            explain_rows(model, [row], positive=spec.positive_class)

        costs[model.flavor] = {"predict_ms": _median_ms(plain, sample),
                               "explain_ms": _median_ms(explained, sample)}  # fmt: skip
        costs[model.flavor]["ratio"] = costs[model.flavor]["explain_ms"] / max(
            costs[model.flavor]["predict_ms"], 1e-9
        )
    return costs


def _median_ms(call: Any, rows: list[dict[str, Any]]) -> float:
    call(rows[0])  # the first call imports (captum) and warms up
    times = []
    for row in rows:
        started = time.perf_counter()
        call(row)
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


@benchmark(
    "B11",
    "explanation cost",
    Target("p99 ratio <= 2 (river champion)", [Criterion("ratio", "<=", 2.0)]),
)
def explanation_cost(context: BenchContext) -> Result:
    missing = not_available("B11", {"inference": "services/inference (the inference service)"})
    if missing is not None:
        return missing
    context.progress.start(2 * context.repetitions + 2)
    rig = serving_rig(context)
    context.progress.advance()
    seconds = load_seconds(context)
    plain_path = rig.predict_path
    explain_path = f"{rig.predict_path}?explain=true"
    runs: dict[Side, list[LoadStats]] = {"baseline": [], "candidate": []}

    def run(side: Side, rep: int) -> float:
        path = explain_path if side == "candidate" else plain_path
        stats = drive(rig.inference_port, path, rig.body, concurrency=CONCURRENCY, seconds=seconds)
        runs[side].append(stats)
        return stats.p99_ms

    baseline_p99, candidate_p99 = interleaved(run, context.repetitions, context.progress)
    errors = {side: sum(s.errors for s in found) for side, found in runs.items()}
    batch = batch_costs(
        rig.stack.usecase(rig.usecase), rig.trained, items=context.size(TIMED_ITEMS, 20)
    )
    context.progress.advance()
    batch_note = "; ".join(
        f"{flavor} in process {c['explain_ms']:.2f} ms vs {c['predict_ms']:.2f} ms an item "
        f"({c['ratio']:.1f}x)"
        for flavor, c in batch.items()
    )
    return measured(
        spec_of("B11"),
        figure=median(candidate_p99),
        unit="ms p99",
        baseline=median(baseline_p99),
        repetitions=context.repetitions,
        notes=f"river champion (baseline_shapley), one item with request fields, "
        f"?explain=true vs plain; {load_note(CONCURRENCY, seconds)}; non-200 answers "
        f"{errors['candidate']} vs {errors['baseline']}; batch families: {batch_note}",
        details={
            "candidate_p99_ms": candidate_p99,
            "baseline_p99_ms": baseline_p99,
            "candidate_p50_ms": median([s.p50_ms for s in runs["candidate"]]),
            "baseline_p50_ms": median([s.p50_ms for s in runs["baseline"]]),
            "concurrency": CONCURRENCY,
            "seconds_per_side": seconds,
            "batch_in_process": batch,
        },
    )
