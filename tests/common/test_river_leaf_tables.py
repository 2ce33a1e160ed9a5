"""A Hoeffding tree served from leaf tables answers river's own floats, exactly."""

from __future__ import annotations

import math
import random
from typing import Any

from river import tree

from services.common.models.river_model import RiverModel
from services.common.models.river_tables import _naive_bayes, _table


def trained_tree(features: int = 30, rows: int = 1500) -> tuple[RiverModel, list[dict[str, float]]]:
    generator = random.Random(7)
    model = RiverModel(tree.HoeffdingTreeClassifier(grace_period=50), "classification", [0, 1])
    seen = []
    for _ in range(rows):
        x = {f"f{j}": generator.gauss(j % 5, 1 + j % 3) for j in range(features)}
        x.update({f"hot{j}": float(generator.random() < 0.3) for j in range(10)})
        model.learn_one(x, int(x["f1"] + x["f2"] - x["f3"] + x["hot0"] > 1.5))
        seen.append(x)
    return model, seen


def test_leaf_tables_give_rivers_probabilities_exactly() -> None:
    model, seen = trained_tree()
    generator = random.Random(11)
    rows = seen[:300]
    partial = []  # features missing, NaN and far out: terms skipped or huge
    for x in seen[300:400]:
        row = dict(x)
        del row[generator.choice(sorted(row))]
        row["f4"] = math.nan if generator.random() < 0.5 else 1e6
        partial.append(row)
    rows += partial
    predictions, probabilities = model.predict_with_proba(rows)
    expected = [model.decode_proba(model.estimator.predict_proba_one(x)) for x in rows]
    assert probabilities == expected  # the same floats, not approximately
    assert predictions == model.predict(rows)


def one_leaf(features: int = 50, rows: int = 400) -> tuple[Any, list[dict[str, float]]]:
    """A one-leaf tree's table over features of scales 1e-3 to 1e3, one of them constant
    within class 0 (its Gaussian has no variance: no term), and rows to score."""
    generator = random.Random(5)
    model = RiverModel(tree.HoeffdingTreeClassifier(grace_period=10_000), "classification", [0, 1])
    seen = []
    for index in range(rows):
        label = index % 2
        x = {f"f{j}": generator.gauss(label, 1) * 10 ** (j % 7 - 3) for j in range(features)}
        x["constant"] = 1.0 if label == 0 else generator.random()
        model.learn_one(x, label)
        seen.append(x)
    table = _table(model.estimator._root)
    assert table is not None and table._row is not None
    assert len(table.table[0][2]) < len(table.table[1][2])  # class 0 lacks a term
    return table, seen


def test_the_one_row_path_is_the_general_paths_floats() -> None:
    table, seen = one_leaf()
    generator = random.Random(3)
    far = [{**x, "f2": generator.choice([math.nan, 1e150, -1e150])} for x in seen[:50]]
    for x in [*seen, *far]:
        fast = table.score(x)
        assert table._straight  # the row was scored by the table's straight-line source
        row, table._row, table._straight = table._row, None, False
        try:
            assert fast == table.score(x) == _naive_bayes(table.table, x)
        finally:
            table._row, table._straight = row, None


def test_rows_scored_one_at_a_time_are_rivers() -> None:
    model, seen = trained_tree()
    generator = random.Random(13)
    rows = [*seen[:300]]
    for x in seen[300:420]:  # a feature absent, NaN, infinite, far out, an integer
        row = dict(x)
        if generator.random() < 0.2:
            del row[generator.choice(sorted(row))]
        else:
            row["f4"] = generator.choice([math.nan, math.inf, -math.inf, 1e150, -1e150, 7])
        rows.append(row)
    for x in rows:
        expected = model.decode_proba(model.estimator.predict_proba_one(x))
        assert model.predict_with_proba([x])[1][0] == expected, x


def test_the_arrays_and_the_loop_agree() -> None:
    model, seen = trained_tree(features=12, rows=600)
    root = model.estimator._root
    leaf = root.traverse(seen[0], until_leaf=True) if hasattr(root, "traverse") else root
    table = _table(leaf)
    if table is None:  # a leaf answering by majority class: nothing to compare
        return
    for x in seen[:100]:
        assert table.score(x) == _naive_bayes(table.table, x)


def test_a_leafs_rows_scored_together_equal_one_by_one() -> None:
    model, seen = trained_tree(features=20, rows=1200)
    rows = seen[:500]
    together = model.predict_with_proba(rows)
    one_by_one = [model.predict_with_proba([x]) for x in rows]
    assert together == ([p[0] for p, _ in one_by_one], [q[0] for _, q in one_by_one])
    root = model.estimator._root
    tables = [_table(root.traverse(x, until_leaf=True)) for x in rows]
    shared = [t for t in tables if t is not None and hasattr(t, "attributes")]
    assert len(shared) > len({id(t) for t in shared})  # some table scored several rows at once
