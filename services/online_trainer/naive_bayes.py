"""One naive-Bayes pass a row for a Hoeffding tree that is scored, then taught, on it.

A Hoeffding tree with adaptive naive-Bayes leaves (river's default) works out
``do_naive_bayes_prediction(x, leaf.stats, leaf.splitters)`` twice for a row
scored prequentially: once in ``predict_proba_one`` (the leaf's prediction)
and again at the start of ``learn_one`` (the leaf counts whether naive Bayes
would have been right). Nothing changes in between: ``learn_one`` reaches the
same leaf and asks before it updates anything. :func:`score_then_learn` keeps
the answer of the first pass and hands it to the second, so the floats, the
tree and the metrics are river's; a second call for another leaf, another
``x`` or after the leaf learned is worked out afresh.

Both passes run :func:`naive_bayes`: river's function with the Gaussian
splitters' ``cond_log_proba`` → ``log_pdf`` calls written out in its loop, the
same expression in the same order, so the same floats (a splitter of another
kind sends the whole call to river's own function).

The module global that river's leaves call is swapped for the duration of one
row and restored after it (also on an error), so river elsewhere in the
process (a baseline, a served model) runs unchanged.

>>> from river import tree
>>> plain, shared = tree.HoeffdingTreeClassifier(grace_period=20), tree.HoeffdingTreeClassifier(
...     grace_period=20)
>>> rows = [({"a": float(i % 7), "b": float(i % 5)}, i % 7 > 2) for i in range(400)]
>>> answers = []
>>> for x, y in rows:
...     answers.append(plain.predict_proba_one(x) == score_then_learn(shared, x, y))
...     plain.learn_one(x, y)
>>> all(answers), shared.summary == plain.summary
(True, True)
"""

from __future__ import annotations

import functools
import math
from typing import Any


class NaiveBayesOnce:
    """river's ``do_naive_bayes_prediction``, answered once from the pass kept while scoring."""

    def __init__(self, compute: Any) -> None:
        self.compute = compute
        self.keeping = False
        self.kept: tuple[Any, Any, Any, Any] | None = None

    def __call__(self, x: Any, stats: Any, splitters: Any) -> Any:
        kept = self.kept
        if kept is not None:
            self.kept = None  # handed out at most once
            if kept[1] is stats and kept[2] is splitters and (kept[0] is x or kept[0] == x):
                return kept[3]
        answer = self.compute(x, stats, splitters)
        if self.keeping:
            self.kept = (x, stats, splitters, answer)
        return answer


@functools.cache
def _river() -> tuple[Any, type, NaiveBayesOnce]:
    from river.tree import HoeffdingTreeClassifier
    from river.tree.nodes import htc_nodes

    return htc_nodes, HoeffdingTreeClassifier, NaiveBayesOnce(naive_bayes)


@functools.cache
def _parts() -> tuple[Any, Any, Any, float]:
    from river.proba.gaussian import _HALF_LOG_TAU, Gaussian
    from river.tree.splitter.gaussian_splitter import GaussianSplitter
    from river.tree.utils import do_naive_bayes_prediction

    return do_naive_bayes_prediction, GaussianSplitter, Gaussian, _HALF_LOG_TAU


def naive_bayes(x: Any, stats: dict[Any, float], splitters: dict[Any, Any]) -> dict[Any, float]:
    """``river.tree.utils.do_naive_bayes_prediction(x, stats, splitters)``, the same floats.

    >>> from river import tree
    >>> from river.tree.utils import do_naive_bayes_prediction
    >>> model = tree.HoeffdingTreeClassifier(grace_period=10**6)
    >>> for i in range(300):
    ...     model.learn_one({"a": float(i % 7), "b": float(i % 5) ** 3}, i % 3)
    >>> leaf, x = model._root, {"a": 2.5, "b": 7.0}
    >>> naive_bayes(x, leaf.stats, leaf.splitters) == do_naive_bayes_prediction(
    ...     x, leaf.stats, leaf.splitters)
    True
    """
    original, gaussian_splitter, gaussian, half_log_tau = _parts()
    total_weight = sum(stats.values())
    if not stats or total_weight == 0:
        return {}
    columns: list[tuple[Any, dict[Any, Any]]] = []
    splitter: Any
    for att, splitter in splitters.items():
        if att in x:
            if type(splitter) is not gaussian_splitter:
                return original(x, stats, splitters)  # type: ignore[no-any-return]
            columns.append((x[att], splitter._att_dist_per_class))
    log = math.log
    votes: dict[Any, float] = {}
    for class_index, class_weight in stats.items():
        if not class_weight > 0:
            votes[class_index] = 0.0
            continue
        vote = log(class_weight / total_weight)
        for value, per_class in columns:
            if class_index not in per_class:
                continue  # river's -inf: no term
            dist: Any = per_class[class_index]
            if type(dist) is not gaussian:
                log_p = dist.log_pdf(value)
            else:  # Gaussian.log_pdf, written out
                var = dist._var
                n = var.mean.n
                if not n > var.ddof:
                    continue
                variance = var._S / (n - var.ddof)
                if not variance > 0.0:
                    continue
                mu = var.mean._mean
                log_p = (value - mu) ** 2 / (-2.0 * variance) - half_log_tau - 0.5 * log(variance)
            if log_p > -math.inf:
                vote += log_p
        votes[class_index] = vote
    max_ll = max(votes.values())
    lse = max_ll + log(sum(math.exp(log_proba - max_ll) for log_proba in votes.values()))
    for class_index in votes:
        votes[class_index] = math.exp(votes[class_index] - lse)
    return votes


def shares_naive_bayes(estimator: Any) -> bool:
    """Whether ``estimator`` is river's own Hoeffding tree classifier (not a subclass)."""
    return type(estimator) is _river()[1]


def score_then_learn(estimator: Any, x: dict[str, float], y: Any) -> dict[Any, float]:
    """``estimator.predict_proba_one(x)``, then ``estimator.learn_one(x, y)``; the probabilities.

    For a Hoeffding tree classifier the naive-Bayes pass of the first is reused
    by the second; any other estimator is called as it is.
    """
    if not shares_naive_bayes(estimator):
        proba: dict[Any, float] = estimator.predict_proba_one(x)
        estimator.learn_one(x, y)
        return proba
    module, _, once = _river()
    original = module.do_naive_bayes_prediction
    module.do_naive_bayes_prediction = once
    try:
        once.keeping = True
        proba = estimator.predict_proba_one(x)
        once.keeping = False
        estimator.learn_one(x, y)
    finally:
        once.keeping = False
        once.kept = None
        module.do_naive_bayes_prediction = original
    return proba
