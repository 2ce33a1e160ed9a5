"""The promotion policy: pure decisions from scores and the use case's ``promotion`` spec.

A candidate is compared with the champion on the spec's primary metric; it
must beat it by at least ``margin`` (and never fall under ``min_quality``).
The first model of a use case only has to reach ``min_quality``. A passing
candidate is promoted, sent to a canary or to shadow, as ``mode`` says. A live
trial (canary or shadow) ends in a rollback when the challenger is worse than
the champion by ``margin``, else in a promotion.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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


def gate_candidate(
    spec: UseCase, candidate: float, champion: float | None, *, basis: str
) -> Verdict:
    """The gate's verdict for a candidate scoring ``candidate`` against ``champion``.

    ``champion`` is None when the use case has no champion yet; ``basis``
    says where the scores come from and goes into the reason.
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
