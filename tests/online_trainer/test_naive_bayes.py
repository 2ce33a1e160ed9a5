"""The trainer's one naive-Bayes pass a row: river's tree, river's floats, river left as it was."""

# river is untyped.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from typing import Any

import pytest
from river import tree
from river.tree.nodes import htc_nodes
from river.tree.nodes.leaf import HTLeaf
from river.tree.utils import do_naive_bayes_prediction

from services.online_trainer.naive_bayes import naive_bayes, score_then_learn
from tests.online_trainer.conftest import agrawal_rows


def leaf_state(model: Any) -> list[tuple[Any, ...]]:
    """Each leaf's class weights and its naive-Bayes and majority-class scores."""
    nodes = model._root.iter_dfs() if hasattr(model._root, "iter_dfs") else [model._root]
    return [
        (
            node.depth,
            node.stats,
            *(getattr(node, f"_{k}_correct_weight", None) for k in ("nb", "mc")),
        )
        for node in nodes
        if isinstance(node, HTLeaf)
    ]


@pytest.mark.parametrize(
    "params",
    [{}, {"grace_period": 50}, {"leaf_prediction": "nb"}, {"nominal_attributes": ["elevel"]}],
)
def test_score_then_learn_is_predict_then_learn(params: dict[str, Any]) -> None:
    data = agrawal_rows(1500, seed=7)
    plain, shared = tree.HoeffdingTreeClassifier(**params), tree.HoeffdingTreeClassifier(**params)
    for x, y in data:
        expected = plain.predict_proba_one(x)
        plain.learn_one(x, y)
        assert score_then_learn(shared, x, y) == expected  # the same floats, row by row
    assert shared.summary == plain.summary
    assert leaf_state(shared) == leaf_state(plain)  # the same tree, leaf by leaf
    assert vars(htc_nodes)["do_naive_bayes_prediction"] is do_naive_bayes_prediction  # restored


def test_naive_bayes_equals_river_on_every_leaf_and_missing_values() -> None:
    model = tree.HoeffdingTreeClassifier(grace_period=100)
    data = agrawal_rows(3000, seed=2)
    for x, y in data:
        model.learn_one(x, y)
    leaves = [node for node in model._root.iter_dfs() if isinstance(node, HTLeaf)]
    assert len(leaves) > 1
    probes = [x for x, _ in data[:200]]
    probes += [{k: v for k, v in x.items() if k != "salary"} for x in probes[:50]]  # a gap
    probes += [{**x, "age": 1e6} for x in probes[:20]]  # far out: -inf-ish terms
    for leaf in leaves:
        for x in probes:
            assert naive_bayes(x, leaf.stats, leaf.splitters) == do_naive_bayes_prediction(
                x, leaf.stats, leaf.splitters
            )


def test_river_is_restored_after_an_error() -> None:
    model = tree.HoeffdingTreeClassifier()
    for x, y in agrawal_rows(50, seed=4):
        score_then_learn(model, x, y)
    with pytest.raises(TypeError):
        score_then_learn(model, None, True)  # type: ignore[arg-type]  # no features: river refuses
    assert vars(htc_nodes)["do_naive_bayes_prediction"] is do_naive_bayes_prediction


def test_other_estimators_are_called_as_they_are() -> None:
    from river import linear_model

    plain, shared = linear_model.LogisticRegression(), linear_model.LogisticRegression()
    for x, y in agrawal_rows(200, seed=1):
        expected = plain.predict_proba_one(x)
        plain.learn_one(x, y)
        assert score_then_learn(shared, x, y) == expected
    assert shared.weights == plain.weights
