"""A naive-Bayes leaf table's log votes as straight-line Python (:func:`straight_votes`).

:class:`~services.common.models.river_tables.LeafTable` scores one row with it when the
table is small: for a request's one item, 40 to 160 terms of Python float arithmetic
cost less than numpy's fixed cost for each of the eight calls its arrays take (credit's
86 terms: about 9 against 11 us a row). The arithmetic is river's own expression, so the
floats are river's: the same operations on the same values, in the same order.
"""

from __future__ import annotations

import math
from typing import Any

STRAIGHT_TERMS = 160  # past this many terms a row, numpy's fixed cost a call is the lower


def straight_votes(table: list[Any], attributes: list[str], half_log_tau: float) -> Any:
    """A function of a row's values (``attributes``' order) to its log votes, written as
    Python source for ``table`` (a leaf's ``(class, weight, terms)``): river's expression
    for each term, ``(x - mu) ** 2 / (-2 var) - log(tau)/2 - log(var)/2``, in river's
    order, one addition after another, its numbers as literals (``repr`` gives a float
    back exactly). False for a table of more than :data:`STRAIGHT_TERMS` terms, or with a
    number that is not finite.

    Where river would skip a term (not above -inf: a value that is infinite or NaN) the
    vote is not finite: the caller scores such a row otherwise. ``x ** 2`` past the
    largest float raises ``OverflowError``, as river's does.

    >>> import math
    >>> votes = straight_votes([(0, 1.0, [("a", 0.5, -2.0, 0.0)]), (1, 0.0, [])], ["a"], 0.9)
    >>> votes(1.5) == [math.log(1.0) + ((1.5 - 0.5) ** 2 / -2.0 - 0.9 - 0.0), 0.0]
    True
    """
    if sum(len(terms) for _, _, terms in table) > STRAIGHT_TERMS:
        return False
    total_weight = sum(weight for _, weight, _ in table)
    try:
        bases = [math.log(weight / total_weight) if weight > 0 else None for _, weight, _ in table]
    except (ValueError, ZeroDivisionError):
        return False
    numbers = [half_log_tau, *(n for _, _, terms in table for _, *found in terms for n in found)]
    numbers.extend(base for base in bases if base is not None)
    if not all(map(math.isfinite, numbers)):
        return False
    position = {att: j for j, att in enumerate(attributes)}
    lines = [f"def votes({', '.join(f'x{j}' for j in range(len(attributes)))}):"]
    votes = []
    for index, ((_, _, terms), base) in enumerate(zip(table, bases, strict=True)):
        if base is None:  # a class without weight votes 0.0
            votes.append("0.0")
            continue
        lines.append(f"    v{index} = {base!r}")
        lines.extend(
            f"    v{index} += (x{position[att]} - {mu!r}) ** 2 / {minus_two_variance!r}"
            f" - {half_log_tau!r} - {half_log_variance!r}"
            for att, mu, minus_two_variance, half_log_variance in terms
        )
        votes.append(f"v{index}")
    lines.append(f"    return [{', '.join(votes)}]")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # the source holds the table's floats, as repr writes them
    return namespace["votes"]
