"""The river adapter: an online model behind driftline's :class:`Model` protocol.

A binary classifier learns on booleans (``label == positive``), which is what
river's binary models and metrics expect; the adapter maps back to the use
case's class values on the way out. Multiclass classifiers and regressors
learn on the values themselves.

>>> from river import linear_model
>>> model = RiverModel(linear_model.LogisticRegression(), "classification",
...                    classes=["no", "yes"], positive="yes")
>>> model.learn_one({"x": 1.0}, "yes")
>>> model.predict([{"x": 1.0}])
['yes']
>>> sorted(model.predict_proba([{"x": 1.0}])[0])
['no', 'yes']
"""

from __future__ import annotations

import functools
import math
import pickle
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from schemas.usecase import Task
from services.common.models.protocol import FeatureDict, Flavor, read_pickle, save_model_file


class RiverModel:
    """A river estimator (usually a pipeline) with the use case's label mapping."""

    flavor: ClassVar[Flavor] = "river"
    FILENAME: ClassVar[str] = "model.pkl"

    def __init__(
        self,
        estimator: Any,
        task: Task,
        classes: list[Any] | None = None,
        positive: Any = None,
    ) -> None:
        self.estimator = estimator
        self.task = task
        self.classes = list(classes) if classes is not None else None
        self.binary = task == "classification" and len(self.classes or []) == 2
        if self.binary and positive is None and self.classes:
            positive = self.classes[-1]
        self.positive = positive
        self.negative = (
            next(c for c in self.classes if c != positive) if self.binary and self.classes else None
        )

    # ---- label mapping -----------------------------------------------------------

    def encode(self, label: Any) -> Any:
        """The target river learns on: a bool for binary classifiers, a float for regressors."""
        if self.task == "regression":
            return float(label)
        if self.binary:
            return label == self.positive
        return label

    def decode(self, y_pred: Any) -> Any:
        """A river prediction as the use case's class value (or number)."""
        if self.binary and isinstance(y_pred, bool):
            return self.positive if y_pred else self.negative
        return y_pred

    def decode_proba(self, proba: dict[Any, float]) -> dict[Any, float]:
        """River's class probabilities keyed by the use case's classes, every class present."""
        if self.binary:
            p_true = float(proba.get(True, 0.0)) if proba else 0.5
            return {self.negative: 1.0 - p_true, self.positive: p_true}
        classes = self.classes or list(proba)
        if not proba:
            return {c: 1.0 / len(classes) for c in classes} if classes else {}
        return {c: float(proba.get(c, 0.0)) for c in classes}

    # ---- the Model protocol ----------------------------------------------------------

    def learn_one(self, x: FeatureDict, label: Any) -> None:
        """Learn one row whose label is in the use case's terms."""
        self.estimator.learn_one(x, self.encode(label))

    def predict(self, rows: Sequence[FeatureDict]) -> list[Any]:
        if self.task == "regression":
            return [float(self.estimator.predict_one(x)) for x in rows]
        answers = []
        for proba in self.predict_proba(rows):
            answers.append(max(proba, key=proba.__getitem__) if proba else None)
        return answers

    def predict_proba(self, rows: Sequence[FeatureDict]) -> list[dict[Any, float]]:
        if self.task != "classification":
            raise TypeError("predict_proba: a regressor has no class probabilities")
        return [self.decode_proba(self.estimator.predict_proba_one(x)) for x in rows]

    def predict_with_proba(
        self, rows: Sequence[FeatureDict]
    ) -> tuple[list[Any], list[dict[Any, float]]]:
        """``(predict(rows), predict_proba(rows))`` of a classifier from one model call a row.

        >>> from river import linear_model
        >>> model = RiverModel(linear_model.LogisticRegression(), "classification", [0, 1])
        >>> model.predict_with_proba([{"x": 1.0}]) == (
        ...     model.predict([{"x": 1.0}]), model.predict_proba([{"x": 1.0}]))
        True
        """
        kind = type(self.estimator)
        if self.task == "classification" and (kind.__module__, kind.__name__) == _HTC:
            estimator = self.estimator
            probabilities = [self.decode_proba(_tree_proba(estimator, x)) for x in rows]
        else:
            probabilities = self.predict_proba(rows)
        answers = [max(p, key=p.__getitem__) if p else None for p in probabilities]
        return answers, probabilities

    def save(self, directory: Path) -> Path:
        state = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        return save_model_file(
            directory, "river", self.FILENAME, lambda path: path.write_bytes(state),
            task=self.task, classes=self.classes, estimator=type(self.estimator).__name__,
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> RiverModel:
        return read_pickle(path, cls)


# ---- a Hoeffding tree's naive-Bayes leaves, scored from tables -------------------------
#
# River's do_naive_bayes_prediction works out each Gaussian's variance and its log on
# every call. A served model does not learn, so per leaf those are worked out once (and
# again whenever the leaf's class weights change: it learned). The arithmetic is
# river's, term by term and in its order, so the probabilities are the same floats.

_HTC = ("river.tree.hoeffding_tree_classifier", "HoeffdingTreeClassifier")
_TABLES: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


@functools.cache
def _river() -> tuple[Any, Any, Any, Any, float]:
    from river.proba.gaussian import _HALF_LOG_TAU, Gaussian
    from river.tree.nodes.branch import DTBranch
    from river.tree.nodes.htc_nodes import LeafNaiveBayesAdaptive
    from river.tree.splitter.gaussian_splitter import GaussianSplitter

    return DTBranch, LeafNaiveBayesAdaptive, Gaussian, GaussianSplitter, _HALF_LOG_TAU


def _tree_proba(tree: Any, x: FeatureDict) -> dict[Any, float]:
    """``tree.predict_proba_one(x)``, the same floats, faster for adaptive-NB leaves.

    >>> from river import tree
    >>> model = RiverModel(tree.HoeffdingTreeClassifier(grace_period=5), "classification", [0, 1])
    >>> for i in range(200):
    ...     model.learn_one({"x": float(i % 7), "z": float(i % 3)}, int(i % 7 > 3))
    >>> rows = [{"x": float(i), "z": 1.0} for i in range(7)]
    >>> model.predict_with_proba(rows) == (model.predict(rows), model.predict_proba(rows))
    True
    """
    DTBranch, LeafNaiveBayesAdaptive, _, _, _ = _river()
    proba = {c: 0.0 for c in sorted(tree.classes)}
    root = tree._root
    if root is not None:
        leaf = root.traverse(x, until_leaf=True) if isinstance(root, DTBranch) else root
        table = None
        naive_bayes = type(leaf) is LeafNaiveBayesAdaptive and leaf.is_active()  # river's test
        if naive_bayes and leaf._nb_correct_weight >= leaf._mc_correct_weight:
            table = _table(leaf)
        proba.update(leaf.prediction(x, tree=tree) if table is None else _naive_bayes(table, x))
    return proba


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
    _TABLES[leaf] = (fingerprint, table)
    return table


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
    max_ll = max(votes.values())
    lse = max_ll + math.log(sum(math.exp(log_proba - max_ll) for log_proba in votes.values()))
    return {class_index: math.exp(vote - lse) for class_index, vote in votes.items()}
