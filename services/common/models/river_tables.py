"""A Hoeffding tree's naive-Bayes leaves, scored from tables (:class:`LeafTable`).

:func:`tree_probas` is ``[tree.predict_proba_one(x) for x in rows]`` with river's
floats; :func:`table_leaves` gives the explanations the leaf tables their rows reach.
"""

from __future__ import annotations

import functools
import math
import operator
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.common.models.protocol import FeatureDict
from services.common.models.river_straight import straight_votes

# River's do_naive_bayes_prediction works out each Gaussian's variance and its log on
# every call. A served model does not learn, so per leaf those are worked out once (and
# again whenever the leaf's class weights change: it learned). The arithmetic is
# river's, term by term and in its order, so the probabilities are the same floats.

HTC = ("river.tree.hoeffding_tree_classifier", "HoeffdingTreeClassifier")
_TABLES: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


@functools.cache
def _river() -> tuple[Any, Any, Any, Any, float]:
    from river.proba.gaussian import _HALF_LOG_TAU, Gaussian
    from river.tree.nodes.branch import DTBranch
    from river.tree.nodes.htc_nodes import LeafNaiveBayesAdaptive
    from river.tree.splitter.gaussian_splitter import GaussianSplitter

    return DTBranch, LeafNaiveBayesAdaptive, Gaussian, GaussianSplitter, _HALF_LOG_TAU


def tree_probas(tree: Any, rows: Sequence[FeatureDict]) -> list[dict[Any, float]]:
    """``[tree.predict_proba_one(x) for x in rows]``, the same floats, faster for
    adaptive-NB leaves: the rows a leaf's table scores are scored together.

    >>> from river import tree
    >>> from services.common.models.river_model import RiverModel
    >>> model = RiverModel(tree.HoeffdingTreeClassifier(grace_period=5), "classification", [0, 1])
    >>> for i in range(200):
    ...     model.learn_one({"x": float(i % 7), "z": float(i % 3)}, int(i % 7 > 3))
    >>> rows = [{"x": float(i), "z": 1.0} for i in range(7)]
    >>> model.predict_with_proba(rows) == (model.predict(rows), model.predict_proba(rows))
    True
    """
    DTBranch, _, _, _, _ = _river()
    root = tree._root
    if len(rows) == 1 and root is not None:  # a request's one item: no grouping by table
        x = rows[0]
        leaf = root.traverse(x, until_leaf=True) if isinstance(root, DTBranch) else root
        table = naive_bayes_table(leaf)
        found = table.score(x) if table is not None else leaf.prediction(x, tree=tree)
        answer = dict.fromkeys(sorted(tree.classes), 0.0)
        answer.update(found)
        return [answer]
    classes = sorted(tree.classes)
    answers: list[dict[Any, float]] = [{c: 0.0 for c in classes} for _ in rows]
    if root is None:
        return answers
    shared: dict[int, tuple[Any, list[int]]] = {}  # a table's id -> the table, its rows
    for index, x in enumerate(rows):
        leaf = root.traverse(x, until_leaf=True) if isinstance(root, DTBranch) else root
        table = naive_bayes_table(leaf)
        if table is None:
            answers[index].update(leaf.prediction(x, tree=tree))
        else:
            shared.setdefault(id(table), (table, []))[1].append(index)
    for table, indices in shared.values():
        if len(indices) == 1:  # one row: the single-row arrays are quicker
            answers[indices[0]].update(table.score(rows[indices[0]]))
            continue
        for index, found in zip(indices, table.score_many([rows[i] for i in indices]), strict=True):
            answers[index].update(found)
    return answers


def naive_bayes_table(leaf: Any) -> Any:
    """The table ``leaf`` votes with when it predicts by naive Bayes (river's test for an
    adaptive leaf), None when it predicts otherwise or its splitters are not Gaussian."""
    adaptive = _river()[1]
    naive_bayes = type(leaf) is adaptive and leaf.is_active()
    if naive_bayes and leaf._nb_correct_weight >= leaf._mc_correct_weight:
        return _table(leaf)
    return None


def table_leaves(tree: Any, names: list[str], matrix: Any) -> list[tuple[LeafTable, Any]] | None:
    """``matrix``'s rows (columns ``names``) by the leaf of a Hoeffding tree classifier they
    reach: each leaf's array table and its rows' indices, when every leaf reached votes by
    naive Bayes with an array table; None otherwise (another model, another leaf)."""
    kind = type(tree)
    if (kind.__module__, kind.__name__) != HTC or tree._root is None:
        return None
    root = tree._root
    if isinstance(root, _river()[0]):
        leaves = [root.traverse(dict(zip(names, row, strict=True))) for row in matrix.tolist()]
    else:
        leaves = [root] * len(matrix)
    groups: dict[int, tuple[Any, list[int]]] = {}
    for index, leaf in enumerate(leaves):
        groups.setdefault(id(leaf), (leaf, []))[1].append(index)
    found = []
    for leaf, indices in groups.values():
        table = naive_bayes_table(leaf)
        if table is None or not getattr(table, "attributes", None):
            return None
        found.append((table, indices))
    return found


def _table(leaf: Any) -> Any:
    """Per class: its weight and its Gaussians' terms (None: a splitter not Gaussian)."""
    _, _, Gaussian, GaussianSplitter, _ = _river()
    fingerprint = tuple(leaf.stats.items())
    found = _TABLES.get(leaf)
    if found is not None and found[0] == fingerprint:
        return found[1]
    splitters = list(leaf.splitters.items())
    table: Any = []
    for class_index, weight in leaf.stats.items():
        terms = []
        for att, splitter in splitters:
            if type(splitter) is not GaussianSplitter:
                table = None
                break
            dist = splitter._att_dist_per_class.get(class_index)
            if dist is None:
                continue  # river's -inf: no term
            if type(dist) is not Gaussian:
                table = None
                break
            var = dist._var
            n = var.mean.n
            variance = var._S / (n - var.ddof) if n > var.ddof else 0.0
            if variance > 0.0:
                terms.append((att, var.mean._mean, -2.0 * variance, 0.5 * math.log(variance)))
        if table is None:
            break
        table.append((class_index, weight, terms))
    compiled = None if table is None else LeafTable(table)
    _TABLES[leaf] = (fingerprint, compiled)
    return compiled


class LeafTable:
    """A leaf's table, also as arrays: :func:`_naive_bayes` for all classes in a few numpy calls.

    The same floats: each term is computed element by element with the same
    operations in the same order (``(x - mu) ** 2 / (-2 var) - log(tau)/2 - log(var)/2``),
    a term that :func:`_naive_bayes` skips (an attribute absent from ``x``, a
    class without that Gaussian, a term not above -inf) adds 0.0 instead, which
    leaves a sum unchanged, and the terms are summed in order by ``cumsum``,
    one addition after another (numpy's ``sum`` would pair them). A table
    with attributes that are not text is scored by :func:`_naive_bayes`.
    """

    def __init__(self, table: list[Any]) -> None:
        self.table = table
        self.score: Any = functools.partial(_naive_bayes, table)
        self.score_many: Any = lambda rows: [_naive_bayes(table, x) for x in rows]
        attributes = list(dict.fromkeys(att for _, _, terms in table for att, *_ in terms))
        total_weight = sum(weight for _, weight, _ in table)
        if table and total_weight != 0 and all(isinstance(a, str) for a in attributes):
            self.attributes = attributes
            # a row holding every attribute is read in one C call (a tuple of its values)
            self._read: Any = operator.itemgetter(*attributes) if len(attributes) > 1 else None
            self.classes = [class_index for class_index, _, _ in table]
            shape = (len(table), len(attributes))
            self.mu, self.minus_two_variance, self.half_log_variance = (
                np.full(shape, np.nan) for _ in range(3)
            )
            self.base = np.zeros((len(table), 1))
            self.skipped = np.zeros(len(table), dtype=bool)  # a class without weight: vote 0.0
            position = {att: j for j, att in enumerate(attributes)}
            for i, (_, weight, terms) in enumerate(table):
                if not weight > 0:
                    self.skipped[i] = True
                    continue
                self.base[i, 0] = math.log(weight / total_weight)
                for att, mu, minus_two_variance, half_log_variance in terms:
                    j = position[att]
                    self.mu[i, j] = mu
                    self.minus_two_variance[i, j] = minus_two_variance
                    self.half_log_variance[i, j] = half_log_variance
            self.score = self._score
            self.score_many = self._score_many
            self._columns: dict[tuple[str, ...], Any] = {}  # names -> where each attribute is
            # Two classes or more: a row holding every attribute is scored by
            # :meth:`_score_row`, from the arrays transposed, a missing term's entries
            # (NaN) made neutral: mu 0, -2 var -inf, log(var)/2 -log(tau)/2, which work out
            # to (-0.0 - log(tau)/2) + log(tau)/2, an exact 0.0, for any finite value.
            self._row: tuple[Any, Any, Any, Any, list[int]] | None = None
            self._straight: Any = None  # straight_votes of the table, made at its first row
            if len(table) > 1 and self._read is not None:
                missing = np.isnan(self.mu.T)
                self._row = (
                    np.where(missing, 0.0, self.mu.T),
                    np.where(missing, -math.inf, self.minus_two_variance.T),
                    np.where(missing, -_river()[4], self.half_log_variance.T),
                    np.where(self.skipped, 0.0, self.base[:, 0]),
                    [i for i, skipped in enumerate(self.skipped) if skipped],
                )

    def votes(self, names: list[str], values: Any) -> Any:
        """Rows x classes log votes of ``values`` (names x rows, NaN for a value absent):
        each term worked out element by element, added to the class's base one attribute
        after another (``cumsum``), as river adds them."""
        columns = self._columns.get(tuple(names))
        if columns is None:
            position = {name: j for j, name in enumerate(names)}
            picked = np.array([position.get(att, -1) for att in self.attributes])
            columns = self._columns[tuple(names)] = (picked, picked < 0)
        values = values[columns[0]]
        values[columns[1]] = math.nan  # an attribute the rows lack: no term
        return self._votes(values)

    def _votes(self, values: Any) -> Any:
        """:meth:`votes` of ``values`` in the table's attribute order."""
        terms = np.subtract(values[:, :, None], self.mu.T[:, None, :], order="C")
        squared(terms)
        terms /= self.minus_two_variance.T[:, None, :]
        terms -= _river()[4]
        terms -= self.half_log_variance.T[:, None, :]
        np.copyto(terms, 0.0, where=~(terms > -math.inf))  # attributes x rows x classes
        terms[0] += self.base[:, 0]
        # In order, one attribute after another: numpy reduces a C-ordered array's outer
        # axis slice by slice, but pairs the terms of an inner axis, as here for one value
        # a slice (cumsum is in order always, and slower).
        in_order = terms[0].size > 1 and terms.flags.c_contiguous
        votes = np.add.reduce(terms, axis=0) if in_order else np.cumsum(terms, axis=0)[-1]
        votes[:, self.skipped] = 0.0
        return votes

    def _values(self, x: FeatureDict) -> Any:
        """``x``'s value of each attribute, NaN for one it lacks."""
        if self._read is not None:
            try:
                return self._read(x)
            except KeyError:
                pass
        get = x.get
        return [get(att, math.nan) for att in self.attributes]

    def _score(self, x: FeatureDict) -> dict[Any, float]:
        straight = self._straight
        if straight is None and self._read is not None:
            straight = self._straight = straight_votes(self.table, self.attributes, _river()[4])
        if straight:
            try:
                votes = straight(*self._read(x))
            except (KeyError, TypeError, OverflowError):  # absent, not a number, too far out
                votes = None
            # Finite only if every term was (a term river skips is -inf or NaN)
            if votes is not None and math.isfinite(sum(votes)):
                return _softmax_of(self.classes, votes)
        if self._row is not None:
            try:
                found = self._score_row(self._read(x))
            except KeyError:  # an attribute absent: its term is skipped, below
                found = None
            if found is not None:
                return found
        values = np.array(self._values(x), dtype=np.float64)
        terms = squared(values - self.mu) / self.minus_two_variance - _river()[4]
        terms -= self.half_log_variance
        terms = np.where(terms > -math.inf, terms, 0.0)
        votes_array = np.cumsum(np.hstack((self.base, terms)), axis=1)[:, -1]
        votes_array[self.skipped] = 0.0
        return _softmax(dict(zip(self.classes, votes_array.tolist(), strict=True)))

    def _score_row(self, values: tuple[float, ...]) -> dict[Any, float] | None:
        """One row's scores in six numpy calls (about a third of the general path's
        time), or None where a term would be skipped.

        The terms are attributes x classes, C-ordered: one ``add.reduce`` over the
        attributes adds them in order, after the base (``a + b`` is ``b + a``), a
        missing term an exact 0.0, as the general path adds it. A term is finite,
        -inf or NaN (``-2 var`` is negative), so a finite vote is a sum in which no
        term was skipped: the general path's, to the bit; any other goes that way.
        """
        mu, minus_two_variance, half_log_variance, base, skipped = self._row  # type: ignore[misc]
        terms = np.subtract(np.array(values, dtype=np.float64)[:, None], mu, order="C")
        squared(terms)
        terms /= minus_two_variance
        terms -= _river()[4]
        terms -= half_log_variance
        terms[0] += base
        votes = np.add.reduce(terms, axis=0).tolist()
        # The sum is finite only if every vote is (one that overflows: the general path)
        if not math.isfinite(sum(votes)):
            return None
        for index in skipped:  # a class without weight: vote 0.0
            votes[index] = 0.0
        return _softmax_of(self.classes, votes)

    def _score_many(self, rows: Sequence[FeatureDict]) -> list[dict[Any, float]]:
        """Each row's scores; the rows are stacked, element by element the same operations."""
        values = np.array([self._values(x) for x in rows], dtype=np.float64)
        votes_array = self._votes(values.T)
        classes = self.classes
        return [_softmax(dict(zip(classes, row, strict=True))) for row in votes_array.tolist()]


def squared(values: Any) -> Any:
    """``values ** 2`` in place, element by element as Python's ``x ** 2`` (C's ``pow``).

    numpy's ``**`` and ``power`` square for an exponent of 2 (``x * x``), which differs
    from ``pow`` in the last bit for about 1 value in 1,000 (measured: 183 of 200,000);
    ``float_power`` calls ``pow`` for each element (0 of 200,000), as river's expression.

    >>> x = -745.2202203571658 - 974.1305948394233
    >>> squared(np.array([x])).tolist() == [x**2], (np.array([x]) ** 2).tolist() == [x**2]
    (True, False)
    """
    return np.float_power(values, 2.0, out=values)


def _softmax(votes: dict[Any, float]) -> dict[Any, float]:
    """river's normalization of naive-Bayes log votes (the log-sum-exp trick)."""
    max_ll = max(votes.values())
    lse = max_ll + math.log(sum(math.exp(log_proba - max_ll) for log_proba in votes.values()))
    return {class_index: math.exp(vote - lse) for class_index, vote in votes.items()}


def _softmax_of(classes: list[Any], votes: list[float]) -> dict[Any, float]:
    """``_softmax(dict(zip(classes, votes)))`` for distinct classes: the same arithmetic
    in the same order, without the dict of votes.

    >>> _softmax_of([0, 1], [-3.0, -4.5]) == _softmax({0: -3.0, 1: -4.5})
    True
    """
    exp = math.exp
    max_ll = max(votes)
    lse = max_ll + math.log(sum([exp(log_proba - max_ll) for log_proba in votes]))
    return {class_index: exp(vote - lse) for class_index, vote in zip(classes, votes, strict=True)}


def _naive_bayes(table: Any, x: FeatureDict) -> dict[Any, float]:
    """river.tree.utils.do_naive_bayes_prediction over a leaf's table."""
    half_log_tau = _river()[4]
    total_weight = sum(weight for _, weight, _ in table)
    if not table or total_weight == 0:
        return {}
    votes: dict[Any, float] = {}
    for class_index, weight, terms in table:
        if not weight > 0:
            votes[class_index] = 0.0
            continue
        vote = math.log(weight / total_weight)
        for att, mu, minus_two_variance, half_log_variance in terms:
            if att in x:
                log_p = (x[att] - mu) ** 2 / minus_two_variance - half_log_tau - half_log_variance
                if log_p > -math.inf:
                    vote += log_p
        votes[class_index] = vote
    return _softmax(votes)
