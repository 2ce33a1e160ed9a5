"""The promotion policy: pure decisions from scores and the use case's ``promotion`` spec.

A candidate is compared with the champion on the spec's primary metric; it
must beat it by at least ``margin`` (and never fall under ``min_quality``).
The first model of a use case only has to reach ``min_quality``. A passing
candidate is promoted, sent to a canary or to shadow, as ``mode`` says. A live
trial (canary or shadow) ends in a rollback when the challenger is worse than
the champion by ``margin``, else in a promotion. With ``max_slice_loss``, a
candidate better overall is still refused when it is worse than the champion
by more than that on any slice value with enough rows (the use case's
``slices``); the reason names the slice.

>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "classification", "label": {"classes": [0, 1]},
...     "fields": {"x": {"type": "float"}}, "features": [{"kind": "passthrough", "field": "x"}],
...     "promotion": {"mode": "canary", "margin": 0.01, "min_quality": 0.6},
... })
>>> gate_candidate(spec, 0.80, 0.75, basis="on 500 held-out rows").action
'canary'
>>> gate_candidate(spec, 0.755, 0.75, basis="on 500 held-out rows").action
'reject'
>>> gate_candidate(spec, 0.65, None, basis="reported test metric").action
'promote'
>>> judge_trial(spec, 0.70, 0.75, rows="120 vs 480 labeled predictions").action
'rollback'
>>> fair = spec.model_copy(update={"promotion": spec.promotion.model_copy(
...     update={"max_slice_loss": 0.02})})
>>> by_tier = {"tier": {"a": SliceComparison(rows=300, candidate=0.85, champion=0.70),
...                     "b": SliceComparison(rows=200, candidate=0.70, champion=0.80)}}
>>> verdict = gate_candidate(fair, 0.80, 0.75, basis="on 500 rows", slices=by_tier)
>>> verdict.action, verdict.reason.split(":")[0]
('reject', 'worse than the champion on slice tier=b')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.slices import SliceComparison, SliceComparisons
from schemas.usecase import LOWER_IS_BETTER, UseCase

Action = Literal["promote", "canary", "shadow", "reject", "rollback"]


@dataclass(frozen=True)
class Verdict:
    """What to do with a candidate or a challenger, and why (the event's ``reason``)."""

    action: Action
    reason: str


def improvement(metric: str, candidate: float, reference: float) -> float:
    """How much better ``candidate`` is than ``reference`` (negative when worse).

    >>> round(improvement("roc_auc", 0.8, 0.75), 4)
    0.05
    >>> improvement("rmse", 1.5, 2.0)
    0.5
    """
    return reference - candidate if metric in LOWER_IS_BETTER else candidate - reference


def passes_floor(metric: str, score: float, floor: float | None) -> bool:
    """Whether ``score`` reaches the spec's ``min_quality`` (a ceiling for lower-is-better).

    >>> passes_floor("roc_auc", 0.55, 0.6), passes_floor("rmse", 3.0, 4.0)
    (False, True)
    >>> passes_floor("f1", 0.1, None)
    True
    """
    if floor is None:
        return True
    return score <= floor if metric in LOWER_IS_BETTER else score >= floor


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def slice_losses(
    spec: UseCase, slices: SliceComparisons, limit: float
) -> list[tuple[str, str, SliceComparison, float]]:
    """Slice values where the candidate is worse than the champion by more than ``limit``,
    worst first: (slice, value, scores, loss). Values under the slice's ``min_rows`` are
    not compared.

    >>> spec = UseCase.model_validate({"name": "t", "task": "regression",
    ...     "fields": {"g": {"type": "float"}}, "features": [{"kind": "passthrough", "field": "g"}],
    ...     "slices": [{"name": "g", "feature": "g", "min_rows": 10}]})
    >>> slices = {"g": {"0": SliceComparison(rows=50, candidate=2.5, champion=2.0),
    ...                 "1": SliceComparison(rows=5, candidate=9.0, champion=1.0)}}
    >>> [(value, loss) for _, value, _, loss in slice_losses(spec, slices, 0.1)]
    [('0', 0.5)]
    """
    metric = spec.primary_metric
    floors = {piece.name: piece.min_rows for piece in spec.slices}
    found = []
    for name, values in slices.items():
        for value, pair in values.items():
            if pair.candidate is None or pair.champion is None:
                continue
            if pair.rows < floors.get(name, 1):
                continue
            loss = -improvement(metric, pair.candidate, pair.champion)
            if loss > limit:
                found.append((name, value, pair, loss))
    return sorted(found, key=lambda item: -item[3])


def gate_candidate(
    spec: UseCase,
    candidate: float,
    champion: float | None,
    *,
    basis: str,
    slices: SliceComparisons | None = None,
) -> Verdict:
    """The gate's verdict for a candidate scoring ``candidate`` against ``champion``.

    ``champion`` is None when the use case has no champion yet; ``basis``
    says where the scores come from and goes into the reason. ``slices``:
    both models per slice value on the same rows (for ``max_slice_loss``).
    """
    policy = spec.promotion
    metric = spec.primary_metric
    if not passes_floor(metric, candidate, policy.min_quality):
        return Verdict(
            "reject",
            f"{metric} {_fmt(candidate)} {basis} does not reach min_quality {policy.min_quality}",
        )
    if champion is None:
        floor = "no floor" if policy.min_quality is None else f"min_quality {policy.min_quality}"
        return Verdict("promote", f"first model: {metric} {_fmt(candidate)} {basis} passes {floor}")
    gain = improvement(metric, candidate, champion)
    comparison = (
        f"{metric} {_fmt(candidate)} vs champion {_fmt(champion)} {basis} "
        f"(improvement {gain:+.4f}, margin {policy.margin})"
    )
    if gain <= 0 or gain < policy.margin:
        return Verdict("reject", f"not better than the champion: {comparison}")
    if policy.max_slice_loss is not None:
        losses = slice_losses(spec, slices or {}, policy.max_slice_loss)
        if losses:
            name, value, pair, loss = losses[0]
            also = "".join(f", {n}={v} by {lost:.4f}" for n, v, _, lost in losses[1:])
            return Verdict(
                "reject",
                f"worse than the champion on slice {name}={value}: {metric} "
                f"{_fmt(pair.candidate or 0.0)} vs {_fmt(pair.champion or 0.0)} on {pair.rows} "
                f"rows (loss {loss:.4f} > max_slice_loss {policy.max_slice_loss}{also}), "
                f"though better overall: {comparison}",
            )
        if not slices:
            comparison += "; slices not compared (no slice scores on these rows)"
    if policy.mode == "direct":
        return Verdict("promote", f"better than the champion: {comparison}")
    if policy.mode == "canary":
        share = f"{policy.canary_share:.0%} of live traffic"
        return Verdict("canary", f"better than the champion, canary on {share}: {comparison}")
    return Verdict("shadow", f"better than the champion, shadow on live traffic: {comparison}")


def judge_trial(spec: UseCase, challenger: float, champion: float, *, rows: str) -> Verdict:
    """End a live trial: roll back a challenger worse by ``margin``, else promote it."""
    metric = spec.primary_metric
    margin = spec.promotion.margin
    gain = improvement(metric, challenger, champion)
    comparison = (
        f"live {metric} {_fmt(challenger)} vs champion {_fmt(champion)} on {rows} "
        f"(improvement {gain:+.4f}, margin {margin})"
    )
    if -gain >= margin and gain < 0:
        return Verdict("rollback", f"challenger worse than the champion: {comparison}")
    return Verdict("promote", f"challenger holds up live: {comparison}")
