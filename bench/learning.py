"""B2 online learning throughput and B3 prequential fidelity, against bare river.

B2 runs the real online trainer service on rows and labels already on its
topics and reads its progress from its ``/metrics``; the baseline is
``river.evaluate.progressive_val_score`` with the same model on the same rows
in one process. B3 compares the trainer's prequential metrics with river's on
the same ordered rows: through :func:`~services.online_trainer.learn_stream`
(the service's own per-row code, in process, as the service package exports
it) and, when B2 ran in the same session, through the service's exported
cumulative metrics too.
"""

# river's metric classes are untyped.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.data import Workload, workload
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
from bench.stack import BenchStack, StackError, publish, wait_for, write_usecase
from schemas import topics
from schemas.usecase import UseCase

TRAINER = "online_trainer"
ROWS_LEARNED = "driftline_online_rows_learned"
MODEL_METRIC = "driftline_online_model_metric"
# Snapshots register the model in MLflow (a second or so each); they are not
# learning, and B2 compares learning, so the bench use cases push them past the run.
NO_SNAPSHOTS = {"models": {"online": {"snapshot_every_rows": 10**9, "snapshot_every_seconds": 1e9}}}
COMPARED = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")


def cached_workload(context: BenchContext, spec: UseCase, count: int, seed: int) -> Workload:
    key = ("workload", spec.name, count, seed)
    if key not in context.cache:
        context.cache[key] = workload(spec, count, seed=seed)
    found: Workload = context.cache[key]
    return found


def river_dataset(spec: UseCase, load: Workload) -> list[tuple[dict[str, float], Any]]:
    """(x, y) pairs as the trainer learns them: the features as floats, the label as the
    use case's class (``UseCase.class_of``) encoded by the trainer's model."""
    from services.online_trainer import build_model

    model = build_model(spec)
    return [
        (
            {name: float(value) for name, value in row.features.items()},
            model.encode(class_of(spec, label["label"])),
        )
        for row, label in zip(load.rows, load.labels, strict=True)
    ]


def class_of(spec: UseCase, value: Any) -> Any:
    """The class ``value`` denotes; a label that names none is an error of the workload.

    >>> from bench.stack import USECASES
    >>> from schemas.usecase import load_usecase
    >>> spec = load_usecase(USECASES / "credit.yaml")
    >>> class_of(spec, spec.label.classes[-1]) == spec.label.classes[-1]
    True
    >>> class_of(spec, "maybe")
    Traceback (most recent call last):
    ...
    bench.stack.StackError: workload label 'maybe' is not a class of credit
    """
    found = spec.class_of(value)
    if found is None:
        raise StackError(f"workload label {value!r} is not a class of {spec.name}")
    return found


def river_metrics(spec: UseCase) -> Any:
    """river's metrics for the comparison, in a ``Metrics`` container (one model pass)."""
    from river import metrics

    if spec.task == "regression":
        return metrics.base.Metrics([metrics.MAE(), metrics.RMSE(), metrics.R2()])
    return metrics.base.Metrics(
        [
            metrics.Accuracy(),
            metrics.Precision(),
            metrics.Recall(),
            metrics.F1(),
            metrics.ROCAUC(),
            metrics.LogLoss(),
        ]
    )


RIVER_NAMES = {
    "Accuracy": "accuracy",
    "Precision": "precision",
    "Recall": "recall",
    "F1": "f1",
    "ROCAUC": "roc_auc",
    "LogLoss": "log_loss",
    "MAE": "mae",
    "RMSE": "rmse",
    "R2": "r2",
}


def bare_river(spec: UseCase, dataset: Any, metric: Any) -> float:
    """Seconds for ``progressive_val_score`` over ``dataset`` with a fresh model of ``spec``."""
    from river import evaluate

    from services.online_trainer import build_model

    model = build_model(spec).estimator
    started = time.perf_counter()
    evaluate.progressive_val_score(dataset, model, metric)
    return time.perf_counter() - started


def river_values(metric: Any) -> dict[str, float]:
    """A river metric (or container) as ``{sklearn-style name: value}``."""
    from river.metrics.base import Metrics

    parts = list(metric) if isinstance(metric, Metrics) else [metric]
    return {RIVER_NAMES[type(part).__name__]: float(part.get()) for part in parts}


def encode_rows(spec: UseCase, load: Workload) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Feature rows and labels of ``load`` as the use case's topics carry them, and keys."""
    import json

    rows = [row.model_copy(update={"usecase": spec.name}) for row in load.rows]
    return (
        [row.model_dump_json().encode() for row in rows],
        [json.dumps(label).encode() for label in load.labels],
        [row.entity_id.encode() for row in rows],
    )


def trainer_run(stack: BenchStack, spec: UseCase, load: Workload) -> tuple[float, dict[str, float]]:
    """Rows learned per second by a fresh trainer process over rows already on its topics,
    from its first reported progress to the last row; and its final cumulative metrics."""
    rows, labels, keys = encode_rows(spec, load)
    asyncio.run(publish(stack.bootstrap, topics.features(spec.name), rows, keys))
    asyncio.run(publish(stack.bootstrap, topics.labels(spec.name), labels))
    count = len(rows)
    stack.start(TRAINER, DRIFTLINE_USECASES=spec.name)
    try:
        samples: list[tuple[float, float]] = []

        def done() -> bool:
            process = stack.processes[TRAINER]
            if process.poll() is not None:
                raise StackError(f"online trainer exited: {stack.tail(TRAINER)}")
            learned = stack.metric(TRAINER, ROWS_LEARNED, usecase=spec.name)
            samples.append((time.monotonic(), learned))
            return learned >= count

        if not wait_for(done, timeout=120 + count / 100, interval=0.02):
            raise StackError(f"{spec.name}: trainer did not learn {count} rows")
        first_time, first_rows = next((t, n) for t, n in samples if n > 0)
        last_time = samples[-1][0]
        if last_time <= first_time:
            raise StackError(f"{spec.name}: one metrics sample saw all rows; use more rows")
        found = stack.metrics(TRAINER)
        final = {
            dict(labels)["metric"]: value
            for (name, labels), value in found.items()
            if name == MODEL_METRIC
            and dict(labels).get("usecase") == spec.name
            and dict(labels).get("window") == "cumulative"
        }
        return (count - first_rows) / (last_time - first_time), final
    finally:
        stack.stop(TRAINER)


@benchmark("B2", "online learning", Target("ratio >= 0.8", [Criterion("ratio", ">=", 0.8)]))
def online_learning(context: BenchContext) -> Result:
    count = context.size(20_000, 4_000)
    stack = BenchStack(Path(context.workdir) / "learning")
    context.cleanup.callback(stack.close)
    specs = [
        stack.add_usecase(f"b2r{rep}", overrides=NO_SNAPSHOTS) for rep in range(context.repetitions)
    ]
    load = cached_workload(context, specs[0], count, seed=5)
    dataset = river_dataset(specs[0], load)
    context.progress.start(2 * context.repetitions)
    stack.start_broker()
    final: dict[str, float] = {}

    def run(side: Side, rep: int) -> float:
        from river import metrics

        if side == "baseline":
            metric = metrics.ROCAUC() if specs[rep].task == "classification" else metrics.MAE()
            return count / bare_river(specs[rep], dataset, metric)
        rate, values = trainer_run(stack, specs[rep], load)
        final.update(values)
        return rate

    baselines, candidates = interleaved(run, context.repetitions, context.progress)
    stack.close()
    context.cache["b2_service_metrics"] = (specs[0].name, count, final)
    model = specs[0].models.online.model
    return measured(
        spec_of("B2"),
        figure=median(candidates),
        unit="rows/s",
        baseline=median(baselines),
        repetitions=context.repetitions,
        notes=f"{count:,} labeled rows, credit use case ({model}); service rate from its "
        "rows_learned gauge (first report to last row), snapshots off; baseline "
        "progressive_val_score with ROCAUC",
        details={"candidate_runs": candidates, "baseline_runs": baselines, "rows": count},
    )


@benchmark("B3", "prequential fidelity", Target("exactly equal", [Criterion("equal", "==", True)]))
def prequential_fidelity(context: BenchContext) -> Result:
    from services.online_trainer import learn_stream

    context.progress.start(2)
    service = context.cache.get("b2_service_metrics")
    count = service[1] if service is not None else context.size(20_000, 2_000)
    spec = write_usecase(Path(context.workdir) / "fidelity", "b3")
    seed = 5
    load = cached_workload(context, spec, count, seed=seed)
    if service is not None:  # B2's rows: the same events under B2's use-case name
        spec = spec.model_copy(update={"name": service[0]})
        load = cached_workload(context, spec, count, seed=seed)
    metric = river_metrics(spec)
    bare_river(spec, river_dataset(spec, load), metric)
    river = river_values(metric)
    context.progress.advance()
    _, ours = learn_stream(spec, load.rows, load.labels)
    context.progress.advance()
    compared = {name: (ours[name], river[name]) for name in COMPARED if name in river}
    sources = {"learn_stream": ours}
    if service is not None:
        sources["service"] = service[2]
    mismatches = [
        f"{source}.{name}: {values.get(name)!r} != {river[name]!r}"
        for source, values in sources.items()
        for name in compared
        if values.get(name) != river[name]
    ]
    primary = spec.primary_metric
    figure = sources.get("service", ours).get(primary, ours[primary])
    where = "the service's /metrics and learn_stream" if service else "learn_stream"
    return measured(
        spec_of("B3"),
        figure=figure,
        unit=primary,
        baseline=river[primary],
        repetitions=1,
        notes=f"{count:,} rows; {len(compared)} metrics ({', '.join(compared)}) from {where} "
        "vs progressive_val_score: "
        + ("all exactly equal" if not mismatches else "; ".join(mismatches)),
        extra={"equal": not mismatches},
        details={"river": river, **sources},
    )
