"""Active learning, measured: labels chosen by uncertainty against labels chosen at random.

``python -m bench.active_learning`` draws ``docs/active_learning.png`` and
prints the table the README quotes. The question: at the same label budget,
does a model that asks for the labels it is least sure of learn faster than
one that asks at random?

The stream is the credit demo's (:func:`services.demo.data.demo_events`:
river's Agrawal generator with ``usecases/credit.yaml``'s demo parameters,
5 % of labels flipped, 2 % of events mangled), featurized by the use case's
own :class:`~services.common.prep.Preparer` (events it refuses are skipped, as
ingestion dead-letters them), one event a simulated second. The model is the
use case's online model (``build_model``: credit's Hoeffding tree), starting
empty. Each event is served (``predict_proba_one``) and the served prediction
is offered to the online trainer's own selection
(:class:`services.online_trainer.labeling.LabelSelector`) with credit's budget
(200 an hour, chosen each minute: about 3 of each minute's 60 events). A
requested label is learned at once (in the service it arrives later on
``<uc>.labels``); nothing else is. After every ``--step`` labels the model is
scored on ``--holdout`` events of the same stream drawn with another seed
(ROC AUC, the use case's primary metric). Each strategy sees the same events;
a curve is the mean over ``--seeds`` streams, its band one standard deviation.
"""

# river's estimators are untyped.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.events import Prediction
from schemas.usecase import UseCase, load_usecase
from services.common.errors import InvalidInput
from services.common.prep import Preparer
from services.online_trainer import build_model
from services.online_trainer.labeling import LabelBudget, LabelSelector

ROOT = Path(__file__).resolve().parents[1]
# entropy ranks a binary classifier's predictions exactly as margin does (both follow
# |p1 - 0.5|), so on credit it would draw the same curve: --strategies adds it.
STRATEGIES = ("margin", "random")
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Curve:
    """One strategy on one stream: the held-out metric after each ``step`` labels."""

    strategy: str
    seed: int
    labels: list[int]
    scores: list[float]


def featurized(spec: UseCase, events: int, seed: int) -> list[tuple[str, dict[str, float], Any]]:
    """(event id, features, label) of the demo stream, less the events ingestion would refuse."""
    from services.demo.data import demo_events

    preparer = Preparer(spec)
    rows = []
    for item in demo_events(spec, events=events, seed=seed, start=START):
        try:
            row = preparer.prepare(item.event)
        except InvalidInput:
            continue
        features = {name: float(value) for name, value in row.features.items()}
        rows.append((row.source_event_id, features, item.label[spec.label.name]))
    return rows


def roc_auc(model: Any, holdout: list[tuple[str, dict[str, float], Any]]) -> float:
    """ROC AUC of ``model`` on the held-out rows (0.5 while it has no answer)."""
    from sklearn.metrics import roc_auc_score

    estimator, positive = model.estimator, model.encode(1)
    scores = [estimator.predict_proba_one(x).get(positive, 0.5) for _, x, _ in holdout]
    truth = [int(label == 1) for _, _, label in holdout]
    return float(roc_auc_score(truth, scores)) if len(set(scores)) > 1 else 0.5


def run_strategy(
    spec: UseCase,
    strategy: str,
    stream: list[tuple[str, dict[str, float], Any]],
    holdout: list[tuple[str, dict[str, float], Any]],
    *,
    labels: int,
    step: int,
    seed: int,
) -> Curve:
    """Serve the stream, learn only the labels the selection asks for, score every ``step``."""
    assert spec.active_learning is not None
    policy = spec.active_learning.model_copy(update={"strategy": strategy})
    chosen_spec = spec.model_copy(update={"active_learning": policy})
    selector = LabelSelector(chosen_spec, LabelBudget())
    model = build_model(spec)
    estimator = model.estimator
    waiting: dict[str, tuple[dict[str, float], Any]] = {}
    used, marks, scores = 0, [0], [roc_auc(model, holdout)]
    for second, (event_id, features, label) in enumerate(stream):
        proba = estimator.predict_proba_one(features)
        p1 = float(proba.get(model.encode(1), 0.5)) if proba else 0.5
        served = Prediction(
            usecase=spec.name,
            source_event_id=event_id,
            entity_id=event_id,
            model_name=f"{spec.name}-online",
            model_version="bench",
            variant="champion",
            prediction=int(p1 >= 0.5),
            probabilities={"0": 1.0 - p1, "1": p1} if proba else {},
            latency_ms=0.0,
        )
        selector.offer(served, float(second))  # may close the last interval first
        for request in selector.budget.outbox:
            x, y = waiting[request.source_event_id]
            estimator.learn_one(x, model.encode(y))
            used += 1
            if used % step == 0:
                marks.append(used)
                scores.append(roc_auc(model, holdout))
        if selector.budget.outbox:
            selector.budget.outbox.clear()
            waiting = {}  # the interval closed: its other events are never asked for
        waiting[event_id] = (features, label)
        if used >= labels:
            break
    return Curve(strategy, seed, marks, scores)


def mean_curve(curves: list[Curve]) -> tuple[list[int], list[float], list[float]]:
    """Labels, mean and standard deviation across streams, as far as every stream reached."""
    length = min(len(c.scores) for c in curves)
    means = [statistics.fmean(c.scores[i] for c in curves) for i in range(length)]
    spread = [
        statistics.pstdev([c.scores[i] for c in curves]) if len(curves) > 1 else 0.0
        for i in range(length)
    ]
    return curves[0].labels[:length], means, spread


def at(labels: list[int], values: list[float], count: int) -> float | None:
    """The value at ``count`` labels (None when the curve stops before)."""
    return values[labels.index(count)] if count in labels else None


def draw(results: dict[str, list[Curve]], spec: UseCase, path: Path, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert spec.active_learning is not None
    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    colors = {"margin": "tab:blue", "entropy": "tab:green", "random": "tab:gray"}
    for strategy, curves in results.items():
        labels, means, spread = mean_curve(curves)
        axes.plot(labels, means, label=strategy, color=colors[strategy], linewidth=2)
        low = [m - s for m, s in zip(means, spread, strict=True)]
        high = [m + s for m, s in zip(means, spread, strict=True)]
        axes.fill_between(labels, low, high, color=colors[strategy], alpha=0.15)
    budget = spec.active_learning
    axes.set_xlabel("labels used (requested and learned)")
    axes.set_ylabel("held-out ROC AUC")
    axes.set_title(
        f"{spec.name}: {spec.models.online.model} online, "
        f"{budget.budget_per_hour} labels/h chosen each {budget.interval_seconds:g} s "
        f"(mean of {seeds} streams, band: 1 sd)",
        fontsize=9,
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.active_learning", description=__doc__)
    parser.add_argument("--usecase", type=Path, default=ROOT / "usecases" / "credit.yaml")
    parser.add_argument("--labels", type=int, default=500, help="labels to learn per curve")
    parser.add_argument("--step", type=int, default=20, help="score after every STEP labels")
    parser.add_argument("--seeds", type=int, default=10, help="streams to average over")
    parser.add_argument("--holdout", type=int, default=2000, help="held-out events")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "active_learning.png")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="margin,entropy,random")
    args = parser.parse_args(argv)
    strategies = [name.strip() for name in args.strategies.split(",") if name.strip()]
    if "random" not in strategies or not set(strategies) <= {"margin", "entropy", "random"}:
        parser.error(f"--strategies {args.strategies!r}: margin, entropy, random; random included")
    spec = load_usecase(args.usecase)
    if spec.active_learning is None or spec.task != "classification":
        parser.error(f"{args.usecase}: a classification use case with active_learning is needed")
    budget = spec.active_learning
    # Enough events for the budget to buy the labels, with room for refused events.
    events = int(args.labels / budget.budget_per_hour * 3600 * 1.2) + 600
    results: dict[str, list[Curve]] = {strategy: [] for strategy in strategies}
    for seed in range(1, args.seeds + 1):
        stream = featurized(spec, events, seed)
        holdout = featurized(spec, args.holdout, 1000 + seed)
        for strategy in strategies:
            curve = run_strategy(
                spec, strategy, stream, holdout, labels=args.labels, step=args.step, seed=seed
            )
            results[strategy].append(curve)
    draw(results, spec, args.out, args.seeds)
    sys.stdout.write(table(results, sorted({200, args.labels})))
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


def table(results: dict[str, list[Curve]], counts: list[int]) -> str:
    """Mean held-out metric per strategy at ``counts`` labels, and each one's gap to random.

    The gap is the mean of the per-stream differences (each strategy saw the same
    streams) with its standard error, so a gap smaller than about two of those is noise.
    """
    others = [s for s in results if s != "random"]
    header = f"{'labels':>7} " + " ".join(f"{s:>8}" for s in results)
    header += "".join(f"  {s + ' - random (se)':>24}" for s in others)
    lines = [header]
    for count in counts:
        values = {s: at(*mean_curve(curves)[:2], count) for s, curves in results.items()}
        cells = " ".join(f"{v:8.4f}" if v is not None else f"{'-':>8}" for v in values.values())
        for strategy in others:
            cells += f"  {paired_gap(results[strategy], results['random'], count):>24}"
        lines.append(f"{count:>7} {cells}")
    return "\n".join(lines) + "\n"


def paired_gap(curves: list[Curve], baseline: list[Curve], count: int) -> str:
    """``+0.0123 (0.0045)``: the mean per-stream difference at ``count`` labels and its error."""
    gaps = [
        c.scores[c.labels.index(count)] - b.scores[b.labels.index(count)]
        for c, b in zip(curves, baseline, strict=True)
        if count in c.labels and count in b.labels
    ]
    if not gaps:
        return "-"
    error = statistics.stdev(gaps) / len(gaps) ** 0.5 if len(gaps) > 1 else float("nan")
    return f"{statistics.fmean(gaps):+.4f} ({error:.4f})"


if __name__ == "__main__":
    raise SystemExit(main())
